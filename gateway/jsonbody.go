package gateway

import (
	"bytes"
	"encoding/json"
	"io"
	"unicode/utf8"
)

// jsonBody is a JSON request body encoded as it is sent. Its small members
// are encoded when it is built; its large strings (file content) are
// escaped a piece at a time while the request reads the body, so sending a
// file costs a small buffer rather than a second, escaped copy of its
// content. The bytes are the ones json.Marshal would produce for the same
// value, and the request carries their exact Content-Length.
type jsonBody struct {
	parts []bodyPart
	size  int64
}

// bodyPart is encoded JSON, or a string to encode as a JSON string.
type bodyPart struct {
	raw   []byte
	str   string
	isStr bool
}

// bodyPiece bounds the bytes of a string escaped in one step.
const bodyPiece = 32 << 10

// add appends encoded JSON text.
func (b *jsonBody) add(raw string) *jsonBody {
	b.parts = append(b.parts, bodyPart{raw: []byte(raw)})
	return b
}

// addValue appends the JSON of a small value.
func (b *jsonBody) addValue(v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	b.parts = append(b.parts, bodyPart{raw: raw})
	return nil
}

// addString appends s as a JSON string, escaped when it is read.
func (b *jsonBody) addString(s string) *jsonBody {
	b.parts = append(b.parts, bodyPart{str: s, isStr: true})
	return b
}

// done measures the body (an encoding pass into nothing) and returns it.
func (b *jsonBody) done() (*jsonBody, error) {
	n, err := io.Copy(io.Discard, b.reader())
	b.size = n
	return b, err
}

// reader returns a new reader of the body from its start.
func (b *jsonBody) reader() io.Reader {
	r := &bodyReader{parts: b.parts}
	r.enc = json.NewEncoder(&r.buf)
	return r
}

// bodyReader reads a jsonBody, encoding each string piece when it is
// needed.
type bodyReader struct {
	parts   []bodyPart
	off     int    // bytes of parts[0].str already encoded
	pending []byte // encoded bytes not read yet
	buf     bytes.Buffer
	enc     *json.Encoder
}

func (r *bodyReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(r.pending) == 0 {
			if len(r.parts) == 0 {
				break
			}
			if err := r.fill(); err != nil {
				return n, err
			}
			continue
		}
		c := copy(p[n:], r.pending)
		r.pending = r.pending[c:]
		n += c
	}
	if n == 0 && len(p) > 0 {
		return 0, io.EOF
	}
	return n, nil
}

// fill encodes what comes next into pending.
func (r *bodyReader) fill() error {
	part := r.parts[0]
	if !part.isStr {
		r.pending = part.raw
		r.parts = r.parts[1:]
		return nil
	}
	rest := part.str[r.off:]
	cut := pieceEnd(rest)
	r.buf.Reset()
	if err := r.enc.Encode(rest[:cut]); err != nil {
		return err
	}
	enc := r.buf.Bytes()
	enc = enc[:len(enc)-2] // the closing quote and Encode's newline
	if r.off > 0 {
		enc = enc[1:] // the opening quote came with the first piece
	}
	r.off += cut
	if r.off == len(part.str) {
		enc = append(enc, '"')
		r.parts, r.off = r.parts[1:], 0
	}
	r.pending = enc
	return nil
}

// pieceEnd is where the next piece of s ends: at most bodyPiece bytes, cut
// at the start of a rune so that escaping the pieces one by one gives the
// escape of the whole (a run of continuation bytes longer than a rune is
// invalid UTF-8 whose bytes escape one by one anyway).
func pieceEnd(s string) int {
	if len(s) <= bodyPiece {
		return len(s)
	}
	cut := bodyPiece
	for i := 0; i < utf8.UTFMax-1 && !utf8.RuneStart(s[cut]); i++ {
		cut--
	}
	return cut
}
