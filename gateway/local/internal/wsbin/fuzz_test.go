package wsbin

import (
	"bytes"
	"errors"
	"testing"
)

func FuzzDecode(f *testing.F) {
	for _, spec := range []string{specSubscribe, specResize, specOutput} {
		f.Add(hexBytes(f, spec))
	}
	f.Add([]byte{KindConnected, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Decode error %v does not wrap ErrMalformed", err)
			}
			return
		}
		enc, err := fr.Encode()
		if err != nil {
			t.Fatalf("Encode of a decoded frame: %v", err)
		}
		// The frame encoding has one form per frame: decode then encode
		// gives back the input.
		if !bytes.Equal(enc, b) {
			t.Fatalf("Encode(Decode(b)) = %x, want %x", enc, b)
		}
		fr2, err := Decode(enc)
		if err != nil {
			t.Fatalf("Decode(Encode(frame)): %v", err)
		}
		if fr2.Kind != fr.Kind || fr2.Channel != fr.Channel || fr2.Type != fr.Type || !bytes.Equal(fr2.Payload, fr.Payload) {
			t.Fatalf("frame changed by a round trip: %+v then %+v", fr, fr2)
		}
	})
}

func FuzzDecodeKV(f *testing.F) {
	for _, spec := range []string{specResize, specOutput} {
		fr, err := Decode(hexBytes(f, spec))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(fr.Payload)
	}
	f.Add(hexBytes(f, `0000`))
	f.Add(hexBytes(f, `0002 0001 "b" 03 00000001 01 0001 "r" 04 00000003 00ff10`))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		fields, err := DecodeFields(b)
		m, errKV := DecodeKV(b)
		if (err == nil) != (errKV == nil) {
			t.Fatalf("DecodeFields error %v, DecodeKV error %v", err, errKV)
		}
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("DecodeFields error %v does not wrap ErrMalformed", err)
			}
			return
		}
		// In field order the block re-encodes to the input (an empty input
		// is the empty block 00 00).
		enc, err := EncodeFields(fields)
		if err != nil {
			t.Fatalf("EncodeFields of decoded fields: %v", err)
		}
		if want := b; len(b) == 0 {
			if !bytes.Equal(enc, []byte{0, 0}) {
				t.Fatalf("EncodeFields(empty) = %x", enc)
			}
		} else if !bytes.Equal(enc, want) {
			t.Fatalf("EncodeFields(DecodeFields(b)) = %x, want %x", enc, want)
		}
		// Through the map: sorted keys, then stable.
		sorted, err := EncodeKV(m)
		if err != nil {
			t.Fatalf("EncodeKV of a decoded map: %v", err)
		}
		m2, err := DecodeKV(sorted)
		if err != nil {
			t.Fatalf("DecodeKV(EncodeKV(m)): %v", err)
		}
		if !equalKV(m, m2) {
			t.Fatalf("map changed by a round trip: %v then %v", m, m2)
		}
		again, err := EncodeKV(m2)
		if err != nil || !bytes.Equal(again, sorted) {
			t.Fatalf("EncodeKV not deterministic: %x then %x (%v)", sorted, again, err)
		}
	})
}
