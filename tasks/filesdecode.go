package tasks

import (
	"errors"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// Decoding a large files:write payload without a second copy of its
// content. encoding/json copies every string out of the payload's JSON, so
// a chunk's files would live twice (the JSON and the strings) while it is
// decoded. decodeFiles instead unescapes each content string in place,
// inside the payload's decompressed JSON, and makes the File's Content a
// string over those bytes: the JSON buffer becomes the content's storage.
//
// This is sound because the buffer is one Decode has just decompressed:
// nothing else refers to it and nothing writes to it after decodeFiles
// returns. It accepts only the JSON New writes (the keys namespace, name,
// files and ensure; path, content, encoding and delete in each file; each
// key once, spelled exactly, without null) and valid UTF-8. Anything else
// is left to encoding/json, from a fresh decompression since the buffer
// may have been partly unescaped. Short strings (names, paths) are copied,
// so that nothing long-lived (a sandbox cache keyed by project) keeps the
// buffer alive.

var errNotCanonical = errors.New("tasks: not the canonical files:write JSON")

type filesDecoder struct {
	b []byte
	i int
}

// decodeFiles decodes buf, which it may modify, as a FilesWrite.
func decodeFiles(buf []byte) (FilesWrite, error) {
	d := &filesDecoder{b: buf}
	var p FilesWrite
	err := d.object(func(key string) error {
		switch key {
		case "namespace":
			return d.copyString(&p.Namespace)
		case "name":
			return d.copyString(&p.Name)
		case "ensure":
			b, err := d.boolean()
			p.Ensure = &b
			return err
		case "files":
			return d.files(&p.Files)
		}
		return errNotCanonical
	})
	if err != nil {
		return FilesWrite{}, err
	}
	if d.ws(); d.i != len(d.b) {
		return FilesWrite{}, errNotCanonical
	}
	return p, nil
}

// object reads an object whose keys are plain, distinct and handled by
// member, which reads the value.
func (d *filesDecoder) object(member func(key string) error) error {
	if !d.next('{') {
		return errNotCanonical
	}
	var seen []string
	if d.next('}') {
		return nil
	}
	for {
		key, err := d.key()
		if err != nil {
			return err
		}
		for _, k := range seen {
			if k == key {
				return errNotCanonical
			}
		}
		seen = append(seen, key)
		if err := member(key); err != nil {
			return err
		}
		if d.next('}') {
			return nil
		}
		if !d.next(',') {
			return errNotCanonical
		}
	}
}

// key reads a key without escapes and its colon.
func (d *filesDecoder) key() (string, error) {
	if !d.next('"') {
		return "", errNotCanonical
	}
	start := d.i
	for d.i < len(d.b) && d.b[d.i] != '"' {
		if c := d.b[d.i]; c == '\\' || c < 0x20 || c >= utf8.RuneSelf {
			return "", errNotCanonical
		}
		d.i++
	}
	if d.i == len(d.b) {
		return "", errNotCanonical
	}
	key := string(d.b[start:d.i])
	d.i++
	if !d.next(':') {
		return "", errNotCanonical
	}
	return key, nil
}

// files reads the files array.
func (d *filesDecoder) files(out *[]File) error {
	if !d.next('[') {
		return errNotCanonical
	}
	files := []File{}
	if !d.next(']') {
		for {
			f, err := d.file()
			if err != nil {
				return err
			}
			files = append(files, f)
			if d.next(']') {
				break
			}
			if !d.next(',') {
				return errNotCanonical
			}
		}
	}
	*out = files
	return nil
}

// file reads one file object.
func (d *filesDecoder) file() (File, error) {
	var f File
	err := d.object(func(key string) error {
		switch key {
		case "path":
			return d.copyString(&f.Path)
		case "encoding":
			return d.copyString(&f.Encoding)
		case "delete":
			b, err := d.boolean()
			f.Delete = b
			return err
		case "content":
			s, err := d.str()
			if len(s) > 0 {
				f.Content = unsafe.String(&s[0], len(s))
			}
			return err
		}
		return errNotCanonical
	})
	return f, err
}

// copyString reads a string value into a copy of its own.
func (d *filesDecoder) copyString(out *string) error {
	s, err := d.str()
	*out = string(s)
	return err
}

// boolean reads true or false.
func (d *filesDecoder) boolean() (bool, error) {
	d.ws()
	for _, lit := range []string{"true", "false"} {
		if len(d.b)-d.i >= len(lit) && string(d.b[d.i:d.i+len(lit)]) == lit {
			d.i += len(lit)
			return lit == "true", nil
		}
	}
	return false, errNotCanonical
}

// str reads a string value and returns its unescaped bytes, written over
// its own literal.
func (d *filesDecoder) str() ([]byte, error) {
	if !d.next('"') {
		return nil, errNotCanonical
	}
	start, w := d.i, d.i
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			d.i++
			return d.b[start:w], nil
		case c == '\\':
			n, err := d.escape(w)
			if err != nil {
				return nil, err
			}
			w += n
			continue
		case c < 0x20:
			return nil, errNotCanonical
		case c >= utf8.RuneSelf:
			r, size := utf8.DecodeRune(d.b[d.i:])
			if r == utf8.RuneError && size == 1 {
				return nil, errNotCanonical // encoding/json would replace it
			}
			w += copy(d.b[w:], d.b[d.i:d.i+size])
			d.i += size
			continue
		}
		d.b[w] = c
		w++
		d.i++
	}
	return nil, errNotCanonical
}

// escape reads the escape at d.i and writes what it stands for at w (never
// past d.i: an escape is never shorter than its text). It returns the
// bytes written.
func (d *filesDecoder) escape(w int) (int, error) {
	if d.i+1 >= len(d.b) {
		return 0, errNotCanonical
	}
	var c byte
	switch d.b[d.i+1] {
	case '"', '\\', '/':
		c = d.b[d.i+1]
	case 'b':
		c = '\b'
	case 'f':
		c = '\f'
	case 'n':
		c = '\n'
	case 'r':
		c = '\r'
	case 't':
		c = '\t'
	case 'u':
		return d.unicodeEscape(w)
	default:
		return 0, errNotCanonical
	}
	d.b[w] = c
	d.i += 2
	return 1, nil
}

// unicodeEscape reads \uXXXX, or a surrogate pair of them, at d.i. A lone
// surrogate is left to encoding/json.
func (d *filesDecoder) unicodeEscape(w int) (int, error) {
	r := d.hex4(d.i + 2)
	if r < 0 {
		return 0, errNotCanonical
	}
	d.i += 6
	if utf16.IsSurrogate(r) {
		r2 := rune(-1)
		if d.i+1 < len(d.b) && d.b[d.i] == '\\' && d.b[d.i+1] == 'u' {
			r2 = d.hex4(d.i + 2)
		}
		if r = utf16.DecodeRune(r, r2); r == utf8.RuneError {
			return 0, errNotCanonical
		}
		d.i += 6
	}
	return utf8.EncodeRune(d.b[w:], r), nil
}

// hex4 is the value of the four hex digits at i, or -1.
func (d *filesDecoder) hex4(i int) rune {
	if i+4 > len(d.b) {
		return -1
	}
	var r rune
	for _, c := range d.b[i : i+4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r*16 + rune(c)
	}
	return r
}

// next skips white space and reads c if it comes next.
func (d *filesDecoder) next(c byte) bool {
	d.ws()
	if d.i < len(d.b) && d.b[d.i] == c {
		d.i++
		return true
	}
	return false
}

func (d *filesDecoder) ws() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}
