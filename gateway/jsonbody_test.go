package gateway

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// marshalBatch is the body BatchFiles sent before it streamed: the
// reference its streamed body must equal byte for byte.
func marshalBatch(t testing.TB, files []BatchFile) []byte {
	t.Helper()
	b, err := json.Marshal(struct {
		Files []BatchFile `json:"files"`
	}{files})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func readBody(t testing.TB, b *jsonBody) []byte {
	t.Helper()
	got, err := io.ReadAll(b.reader())
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(got)) != b.size {
		t.Fatalf("body is %d bytes, its size says %d", len(got), b.size)
	}
	return got
}

func TestJSONBodyMatchesMarshal(t *testing.T) {
	t.Parallel()
	edge := strings.Repeat("a", bodyPiece-1) + "é" + strings.Repeat("b", bodyPiece-2) + "€" + // runes across piece ends
		strings.Repeat("c", bodyPiece-3) + "\U0001F600" + "<&>\u2028\u2029\"\\\n\t\x00\x1f\x7f" +
		strings.Repeat("\x80", 2*bodyPiece+5) + "\xff\xfe" + strings.Repeat("\xe2\x82", bodyPiece) // invalid UTF-8
	contents := []string{"", "x", "hello\nworld", edge, strings.Repeat("0123456789", 3*bodyPiece/10+7), strings.Repeat("é", bodyPiece)}
	for i, c := range contents {
		files := []BatchFile{
			{Path: "/a/b.txt", Operation: BatchWrite, Content: c},
			{Path: "gone", Operation: BatchDelete},
			{Path: "q\"<x>", Operation: BatchWrite, Content: c + "tail"},
		}
		body, err := batchBody(files)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := readBody(t, body), marshalBatch(t, files); !bytes.Equal(got, want) {
			t.Errorf("content %d: streamed body differs from json.Marshal (%d vs %d bytes)", i, len(got), len(want))
		}
		// Read a byte at a time, the pieces give the same bytes.
		got, err := io.ReadAll(iotest.OneByteReader(body.reader()))
		if err != nil || !bytes.Equal(got, marshalBatch(t, files)) {
			t.Errorf("content %d: read a byte at a time: %v", i, err)
		}
	}
}

// FuzzJSONBody: a streamed body is json.Marshal's body, whatever the
// content, and whatever the size of the reads.
func FuzzJSONBody(f *testing.F) {
	f.Add("hello", uint16(7), uint8(1))
	f.Add("é€\U0001F600<>&\u2028\x00\xff", uint16(2), uint8(0))
	f.Fuzz(func(t *testing.T, s string, repeat uint16, read uint8) {
		content := strings.Repeat(s, int(repeat)%(3*bodyPiece/max(len(s), 1)+2))
		files := []BatchFile{{Path: "p", Operation: BatchWrite, Content: content}, {Path: s, Operation: BatchDelete}}
		body, err := batchBody(files)
		if err != nil {
			t.Fatal(err)
		}
		r := body.reader()
		var got []byte
		buf := make([]byte, int(read)+1)
		for {
			n, err := r.Read(buf)
			got = append(got, buf[:n]...)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if want := marshalBatch(t, files); !bytes.Equal(got, want) || int64(len(got)) != body.size {
			t.Fatalf("streamed body (%d bytes, size %d) differs from json.Marshal (%d bytes)", len(got), body.size, len(want))
		}
	})
}
