package wsbin

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"
)

// hexBytes builds bytes from the notation of protocol §3.3: hex groups and
// "quoted" UTF-8 strings (\n allowed inside quotes).
func hexBytes(t testing.TB, spec string) []byte {
	t.Helper()
	var out []byte
	for len(spec) > 0 {
		spec = strings.TrimLeft(spec, " \n\t")
		if spec == "" {
			break
		}
		if spec[0] == '"' {
			end := strings.IndexByte(spec[1:], '"')
			if end < 0 {
				t.Fatalf("unterminated string in %q", spec)
			}
			out = append(out, strings.ReplaceAll(spec[1:1+end], `\n`, "\n")...)
			spec = spec[end+2:]
			continue
		}
		end := strings.IndexAny(spec, " \n\t")
		if end < 0 {
			end = len(spec)
		}
		b, err := hex.DecodeString(spec[:end])
		if err != nil {
			t.Fatalf("bad hex %q: %v", spec[:end], err)
		}
		out = append(out, b...)
		spec = spec[end:]
	}
	return out
}

// The three examples of protocol §3.3, verbatim.
const (
	specSubscribe = `01 0007 "signals" 0009 "subscribe" 00000002 0000`
	specResize    = `03 0000 000f "terminal:resize" 0000003c 0003 000b "terminal_id" 01 00000002 "t1"
	                 0004 "cols" 02 00000008 4054000000000000 0004 "rows" 02 00000008 4038000000000000`
	specOutput = `03 000b "terminal:t1" 000f "terminal:output" 00000012 0001 0006 "output"
	              01 00000003 "hi\n"`
)

func TestProtocolExamples(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		spec   string
		frame  Frame
		fields []Field // the payload, in wire order
	}{
		{"subscribe signals", specSubscribe,
			Frame{Kind: KindSubscribe, Channel: "signals", Type: "subscribe"}, nil},
		{"resize t1 80x24", specResize,
			Frame{Kind: KindData, Type: "terminal:resize"},
			[]Field{{"terminal_id", "t1"}, {"cols", 80.0}, {"rows", 24.0}}},
		{"terminal output", specOutput,
			Frame{Kind: KindData, Channel: "terminal:t1", Type: "terminal:output"},
			[]Field{{"output", "hi\n"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			wire := hexBytes(t, tt.spec)
			payload, err := EncodeFields(tt.fields)
			if err != nil {
				t.Fatal(err)
			}
			want := tt.frame
			want.Payload = payload

			got, err := Decode(wire)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if got.Kind != want.Kind || got.Channel != want.Channel || got.Type != want.Type || !bytes.Equal(got.Payload, want.Payload) {
				t.Fatalf("Decode = %+v, want %+v", got, want)
			}
			enc, err := want.Encode()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(enc, wire) {
				t.Fatalf("Encode =\n%x\nwant\n%x", enc, wire)
			}

			fields, err := DecodeFields(got.Payload)
			if err != nil {
				t.Fatal(err)
			}
			if !equalFields(fields, tt.fields) {
				t.Fatalf("DecodeFields = %v, want %v", fields, tt.fields)
			}
			m, err := got.KV()
			if err != nil {
				t.Fatal(err)
			}
			if len(m) != len(tt.fields) {
				t.Fatalf("KV = %v", m)
			}
			for _, f := range tt.fields {
				if !equalValue(m[f.Key], f.Value) {
					t.Fatalf("KV[%q] = %v, want %v", f.Key, m[f.Key], f.Value)
				}
			}
			// EncodeKV sorts the keys: the same map, maybe another order.
			sorted, err := EncodeKV(m)
			if err != nil {
				t.Fatal(err)
			}
			m2, err := DecodeKV(sorted)
			if err != nil || !equalKV(m, m2) {
				t.Fatalf("EncodeKV round trip = %v, %v", m2, err)
			}
		})
	}
}

func TestEncodeKVSortsKeysAndConvertsNumbers(t *testing.T) {
	t.Parallel()
	got, err := EncodeKV(map[string]any{"rows": 24, "terminal_id": "t1", "cols": int64(80)})
	if err != nil {
		t.Fatal(err)
	}
	want := hexBytes(t, `0003 0004 "cols" 02 00000008 4054000000000000 0004 "rows" 02 00000008 4038000000000000
		000b "terminal_id" 01 00000002 "t1"`)
	if !bytes.Equal(got, want) {
		t.Fatalf("EncodeKV =\n%x\nwant\n%x", got, want)
	}
	data, err := EncodeData("terminal:t1", "terminal:output", map[string]any{"output": "hi\n"})
	if err != nil {
		t.Fatal(err)
	}
	if want := hexBytes(t, specOutput); !bytes.Equal(data, want) {
		t.Fatalf("EncodeData =\n%x\nwant\n%x", data, want)
	}
}

func TestKVRoundTrip(t *testing.T) {
	t.Parallel()
	m := map[string]any{
		"s":     "héllo\x00world",
		"empty": "",
		"n":     -1.5,
		"nan":   math.NaN(),
		"inf":   math.Inf(1),
		"t":     true,
		"f":     false,
		"raw":   []byte{0, 1, 2, 255},
		"":      "empty key",
	}
	b, err := EncodeKV(m)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeKV(b)
	if err != nil {
		t.Fatal(err)
	}
	if !equalKV(got, m) {
		t.Fatalf("round trip = %v, want %v", got, m)
	}
	for _, in := range [][]byte{nil, {}, {0, 0}} {
		got, err := DecodeKV(in)
		if err != nil || got == nil || len(got) != 0 {
			t.Fatalf("DecodeKV(%x) = %v, %v; want empty map", in, got, err)
		}
	}
}

func TestFrameRoundTrip(t *testing.T) {
	t.Parallel()
	for _, f := range []Frame{
		{Kind: KindConnected},
		{Kind: KindError, Channel: "terminal:x", Type: "error", Payload: []byte("boom")},
		{Kind: KindUnsubscribe, Channel: strings.Repeat("c", MaxChannelLen), Type: strings.Repeat("t", MaxTypeLen)},
	} {
		b, err := f.Encode()
		if err != nil {
			t.Fatal(err)
		}
		got, err := Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		if got.Kind != f.Kind || got.Channel != f.Channel || got.Type != f.Type || !bytes.Equal(got.Payload, f.Payload) {
			t.Fatalf("round trip of kind %d changed the frame", f.Kind)
		}
	}
	// Decode copies the payload.
	b, _ := Frame{Kind: KindData, Payload: []byte("abc")}.Encode()
	f, _ := Decode(b)
	b[len(b)-1] = 'X'
	if string(f.Payload) != "abc" {
		t.Fatal("Payload aliases the input")
	}
}

func TestDecodeErrors(t *testing.T) {
	t.Parallel()
	good := hexBytes(t, specSubscribe)
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "frame kind needs 1 bytes"},
		{"unknown kind", append([]byte{0x06}, good[1:]...), "unknown frame kind 0x06"},
		{"kind zero", append([]byte{0x00}, good[1:]...), "unknown frame kind 0x00"},
		{"no channel length", good[:2], "channel length needs 2 bytes"},
		{"short channel", good[:5], "channel needs 7 bytes at offset 3, 2 left"},
		{"short type", good[:15], "message type needs 9 bytes"},
		{"no payload length", good[:21], "payload length needs 4 bytes"},
		{"short payload", good[:len(good)-1], "payload needs 2 bytes"},
		{"trailing byte", append(append([]byte(nil), good...), 0), "1 unexpected bytes after the frame"},
		{"huge payload length", hexBytes(t, `03 0000 0000 ffffffff 00`), "payload needs 4294967295 bytes"},
	}
	for _, tt := range tests {
		_, err := Decode(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Decode error = %v, want one containing %q wrapping ErrMalformed", tt.name, err, tt.want)
		}
	}
}

func TestDecodeKVErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, spec, want string
	}{
		{"one byte", `00`, "field count needs 2 bytes"},
		{"count without fields", `0001`, "key length needs 2 bytes"},
		{"short key", `0001 0005 "ab"`, "key needs 5 bytes"},
		{"no value type", `0001 0001 "k"`, `value type needs 1 bytes at offset 5, 0 left, key "k"`},
		{"unknown value type", `0001 0001 "k" 05 00000000`, `unknown value type 0x05, key "k"`},
		{"short value", `0001 0001 "k" 01 00000004 "ab"`, `value needs 4 bytes`},
		{"number of 4 bytes", `0001 0001 "n" 02 00000004 00000000`, `number "n" is 4 bytes, want 8`},
		{"bool of 2 bytes", `0001 0001 "b" 03 00000002 0000`, `bool "b" is not a single byte`},
		{"bool of value 2", `0001 0001 "b" 03 00000001 02`, `bool "b" is not a single byte`},
		{"duplicate key", `0002 0001 "k" 01 00000000 0001 "k" 01 00000000`, `duplicate key "k"`},
		{"trailing bytes", `0000 00`, "1 unexpected bytes after the KV block"},
		{"count too high", `ffff 0001 "k" 01 00000000`, "(field 2 of 65535)"},
	}
	for _, tt := range tests {
		_, err := DecodeKV(hexBytes(t, tt.spec))
		if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: DecodeKV error = %v, want one containing %q wrapping ErrMalformed", tt.name, err, tt.want)
		}
	}
}

func TestEncodeErrors(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 1<<16)
	for _, tt := range []struct {
		name string
		f    Frame
		want string
	}{
		{"kind", Frame{Kind: 9}, "unknown kind 0x09"},
		{"channel", Frame{Kind: KindData, Channel: long}, "channel is 65536 bytes"},
		{"type", Frame{Kind: KindData, Type: long}, "message type is 65536 bytes"},
	} {
		if _, err := tt.f.Encode(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Encode error = %v, want %q", tt.name, err, tt.want)
		}
	}
	for _, tt := range []struct {
		name string
		m    map[string]any
		want string
	}{
		{"nil", map[string]any{"a": nil}, `key "a": nil value`},
		{"nested", map[string]any{"a": map[string]any{}}, `key "a": unsupported value type map[string]interface {}`},
		{"array", map[string]any{"a": []string{"x"}}, `key "a": unsupported value type []string`},
		{"long key", map[string]any{long: "v"}, "key is 65536 bytes"},
	} {
		if _, err := EncodeKV(tt.m); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: EncodeKV error = %v, want %q", tt.name, err, tt.want)
		}
	}
	if _, err := EncodeFields([]Field{{"k", "a"}, {"k", "b"}}); err == nil || !strings.Contains(err.Error(), `duplicate key "k"`) {
		t.Errorf("EncodeFields duplicate error = %v", err)
	}
	many := make(map[string]any, MaxFields+1)
	for i := range MaxFields + 1 {
		many[strconv.Itoa(i)] = true
	}
	if _, err := EncodeKV(many); err == nil || !strings.Contains(err.Error(), "65536 fields") {
		t.Errorf("EncodeKV of 65536 fields error = %v", err)
	}
}

func TestClientDecodesKV(t *testing.T) {
	t.Parallel()
	for typ, want := range map[string]bool{
		"terminal:output": true, "terminal:input": true, "terminal:resize": true,
		"file:changed": true, "signal": true, "test": true,
		"terminal:created": false, "command:exit": false, "watcher:created": false, "": false,
	} {
		if got := ClientDecodesKV(typ); got != want {
			t.Errorf("ClientDecodesKV(%q) = %v, want %v", typ, got, want)
		}
	}
}

func equalValue(a, b any) bool {
	switch a := a.(type) {
	case float64:
		b, ok := b.(float64)
		return ok && math.Float64bits(a) == math.Float64bits(b)
	case []byte:
		b, ok := b.([]byte)
		return ok && bytes.Equal(a, b)
	case string, bool:
		return a == b
	}
	return false
}

func equalKV(a, b map[string]any) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok || !equalValue(v, w) {
			return false
		}
	}
	return true
}

func equalFields(a, b []Field) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Key != b[i].Key || !equalValue(a[i].Value, b[i].Value) {
			return false
		}
	}
	return true
}
