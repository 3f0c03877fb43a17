package tasks

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ProjectOf reads the project off a task's payload as a stream, so that a
// large payload costs a small buffer rather than its decoded size: this is
// how the worker learns which project lease a files:write chunk needs
// before it decodes the files.
//
// The scan reads the top-level "namespace" and "name" members with
// encoding/json's rules (the last of duplicate keys wins; keys match case-
// insensitively) and skips every other value without keeping it. It checks
// the payload's structure only as far as it needs to find them.

// errScan is any payload the scan cannot read.
var errScan = errors.New("tasks: unreadable payload")

// Bounds of what the scan keeps: a key that can match "namespace" is at
// most 9 runes of up to 6 bytes each when escaped; a name or namespace
// literal longer than maxScanValue is not a valid one.
const (
	maxScanKey   = 64
	maxScanValue = 4 << 10
)

// scanProject reads the top-level namespace and name of the JSON object in
// r, through a buffer of at most bufSize bytes.
func scanProject(r io.Reader, bufSize int) (Project, error) {
	s := &scanner{r: bufio.NewReaderSize(r, bufSize)}
	var p Project
	if c, err := s.next(); err != nil || c != '{' {
		return p, errScan
	}
	c, err := s.next()
	if err != nil {
		return p, errScan
	}
	for c != '}' {
		if c != '"' {
			return p, errScan
		}
		if err := s.member(&p); err != nil {
			return p, err
		}
		if c, err = s.next(); err != nil || (c != ',' && c != '}') {
			return p, errScan
		}
		if c == ',' {
			if c, err = s.next(); err != nil || c == '}' {
				return p, errScan
			}
		}
	}
	if _, err := s.next(); err != io.EOF {
		return p, errScan // trailing data
	}
	return p, nil
}

type scanner struct {
	r *bufio.Reader
}

// next returns the next byte that is not JSON white space.
func (s *scanner) next() (byte, error) {
	for {
		c, err := s.r.ReadByte()
		if err != nil {
			return 0, err
		}
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		}
		return c, nil
	}
}

// member reads one member whose key's opening quote has been read, and
// stores its value in p when the key is namespace or name.
func (s *scanner) member(p *Project) error {
	key, err := s.str(maxScanKey)
	if err != nil {
		return err
	}
	if c, err := s.next(); err != nil || c != ':' {
		return errScan
	}
	var dst *string
	switch {
	case keyIs(key, "NAMESPACE"):
		dst = &p.Namespace
	case keyIs(key, "NAME"):
		dst = &p.Name
	}
	c, err := s.next()
	if err != nil {
		return errScan
	}
	if dst == nil {
		return s.skip(c)
	}
	switch c {
	case '"':
		v, err := s.str(maxScanValue)
		if err != nil || v == nil {
			return errScan
		}
		*dst = *v
		return nil
	case 'n': // null leaves the field as it is, as with encoding/json
		return s.literal("ull")
	}
	return errScan
}

// str reads the rest of a string whose opening quote has been read and
// returns it unescaped, or nil if its literal is longer than limit bytes.
func (s *scanner) str(limit int) (*string, error) {
	lit := make([]byte, 1, 32)
	lit[0] = '"'
	plain := true // no escapes, ASCII: the literal is the value
	for {
		c, err := s.r.ReadByte()
		if err != nil {
			return nil, errScan
		}
		if len(lit) <= limit {
			lit = append(lit, c)
		}
		switch {
		case c == '"':
			if len(lit) > limit {
				return nil, nil
			}
			if plain {
				v := string(lit[1 : len(lit)-1])
				return &v, nil
			}
			var v string
			if json.Unmarshal(lit, &v) != nil {
				return nil, errScan
			}
			return &v, nil
		case c == '\\':
			plain = false
			e, err := s.r.ReadByte()
			if err != nil {
				return nil, errScan
			}
			if len(lit) <= limit {
				lit = append(lit, e)
			}
		case c < 0x20:
			return nil, errScan
		case c >= utf8.RuneSelf:
			plain = false
		}
	}
}

// skip reads past a value that starts with c.
func (s *scanner) skip(c byte) error {
	switch c {
	case '"':
		return s.skipString()
	case '{', '[':
		return s.skipNested(c)
	case 't':
		return s.literal("rue")
	case 'f':
		return s.literal("alse")
	case 'n':
		return s.literal("ull")
	}
	if c == '-' || ('0' <= c && c <= '9') {
		return s.skipNumber()
	}
	return errScan
}

// skipString reads past the rest of a string, a buffer at a time.
func (s *scanner) skipString() error {
	for {
		if _, err := s.r.Peek(1); err != nil {
			return errScan
		}
		buf, _ := s.r.Peek(s.r.Buffered())
		i := 0
		for i < len(buf) {
			switch buf[i] {
			case '"':
				_, _ = s.r.Discard(i + 1)
				return nil
			case '\\':
				i += 2 // the escaped byte cannot end the string
			default:
				i++
			}
		}
		_, _ = s.r.Discard(len(buf))
		if i > len(buf) { // the escaped byte is in the next buffer
			if _, err := s.r.ReadByte(); err != nil {
				return errScan
			}
		}
	}
}

// skipNested reads past the rest of an object or array opened by open.
// Inside it, only strings are told apart from the other bytes: enough to
// find the closing bracket of a well-formed value.
func (s *scanner) skipNested(open byte) error {
	stack := []byte{open}
	for len(stack) > 0 {
		c, err := s.r.ReadByte()
		if err != nil {
			return errScan
		}
		switch c {
		case '"':
			if err := s.skipString(); err != nil {
				return err
			}
		case '{', '[':
			stack = append(stack, c)
		case '}', ']':
			if open := stack[len(stack)-1]; (open == '{') != (c == '}') {
				return errScan
			}
			stack = stack[:len(stack)-1]
		}
	}
	return nil
}

// literal reads the rest of true, false or null.
func (s *scanner) literal(rest string) error {
	for i := range len(rest) {
		if c, err := s.r.ReadByte(); err != nil || c != rest[i] {
			return errScan
		}
	}
	return nil
}

// skipNumber reads past the rest of a number.
func (s *scanner) skipNumber() error {
	for {
		c, err := s.r.ReadByte()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return errScan
		}
		if !('0' <= c && c <= '9' || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-') {
			return s.r.UnreadByte()
		}
	}
}

// keyIs reports whether key k matches the field name folded, as
// encoding/json matches keys to fields case-insensitively.
func keyIs(k *string, folded string) bool {
	if k == nil {
		return false
	}
	ascii := true
	for i := range len(*k) {
		ascii = ascii && (*k)[i] < utf8.RuneSelf
	}
	if ascii {
		return strings.EqualFold(*k, folded)
	}
	return foldKey(*k) == folded
}

// foldKey folds a key as encoding/json does to match it to a field name
// case-insensitively (upper case of lower case, rune by rune).
func foldKey(k string) string {
	out := make([]byte, 0, len(k))
	for _, r := range k {
		if r < utf8.RuneSelf {
			if 'a' <= r && r <= 'z' {
				r -= 'a' - 'A'
			}
			out = append(out, byte(r))
			continue
		}
		out = utf8.AppendRune(out, unicode.ToUpper(unicode.ToLower(r)))
	}
	return string(out)
}

// scanBuffer is the scan's buffer for a payload of n bytes: no larger
// than the payload, which is small unless compressed.
func scanBuffer(n int) int { return min(n+16, 32<<10) }

// payloadReader returns the JSON of a task payload as a stream, capped at
// MaxPayloadBytes, as Uncompress would return it whole.
func payloadReader(payload []byte, headers map[string]string) (io.Reader, func(), error) {
	enc := headers[HeaderContentEncoding]
	switch {
	case enc == EncodingGzip || isGzip(payload):
	case enc == "" || enc == "identity":
		return bytes.NewReader(payload), func() {}, nil
	default:
		return nil, nil, errScan
	}
	zr, err := gzip.NewReader(bytes.NewReader(payload))
	if err != nil {
		return nil, nil, errScan
	}
	return io.LimitReader(zr, MaxPayloadBytes), func() { _ = zr.Close() }, nil
}
