package tasks

import (
	"encoding/base64"
	"io"
	"strings"
)

// File content encodings (File.Encoding).
const (
	// EncodingUTF8 is text content, as is an empty Encoding.
	EncodingUTF8 = "utf-8"
	// EncodingBase64 is binary content as standard base64 (RFC 4648 §4,
	// padded); line breaks are ignored.
	EncodingBase64 = "base64"
)

// BinaryFile returns a File that writes data, whatever its bytes, to path:
// Content is the base64 of data and Encoding EncodingBase64. The daemon's
// file API carries text only; the worker stages such a file as base64 text
// beside its target and decodes it there with a command.
func BinaryFile(path string, data []byte) File {
	return File{Path: path, Content: base64.StdEncoding.EncodeToString(data), Encoding: EncodingBase64}
}

// IsBinary reports whether f's content is base64-encoded bytes.
func (f File) IsBinary() bool { return f.Encoding == EncodingBase64 }

// Bytes returns the bytes f writes: Content itself for text, decoded for
// EncodingBase64.
func (f File) Bytes() ([]byte, error) {
	if !f.IsBinary() {
		return []byte(f.Content), nil
	}
	return base64.StdEncoding.DecodeString(f.Content)
}

// Size is the number of bytes f writes (decoded bytes for base64 content;
// for content that is not valid base64, its encoded length).
func (f File) Size() int {
	if !f.IsBinary() {
		return len(f.Content)
	}
	n, err := decodedLen(f.Content)
	if err != nil {
		return len(f.Content)
	}
	return n
}

// decodedLen decodes base64 s without keeping the bytes and returns how
// many there are.
func decodedLen(s string) (int, error) {
	n, err := io.Copy(io.Discard, base64.NewDecoder(base64.StdEncoding, strings.NewReader(s)))
	return int(n), err
}

// checkContent validates the encoding and content of file field (such as
// "files[2]") and returns its size in decoded bytes.
func checkContent(field string, f File) (int, error) {
	switch f.Encoding {
	case "", EncodingUTF8:
		if len(f.Content) > MaxFileBytes {
			return 0, invalid(field+".content", "is %d bytes, more than the %d-byte limit per file", len(f.Content), MaxFileBytes)
		}
		if err := checkUTF8(field+".content", f.Content); err != nil {
			return 0, err
		}
		return len(f.Content), nil
	case EncodingBase64:
	default:
		return 0, invalid(field+".encoding", "%s must be %q (text, the default) or %q", quote(f.Encoding), EncodingUTF8, EncodingBase64)
	}
	// Reject before decoding what cannot fit, so a huge string costs
	// nothing.
	if len(f.Content) > base64.StdEncoding.EncodedLen(MaxFileBytes)+len(f.Content)/76*2+4 {
		return 0, invalid(field+".content", "decodes to more than the %d-byte limit per file", MaxFileBytes)
	}
	n, err := decodedLen(f.Content)
	if err != nil {
		return 0, invalid(field+".content", "is not valid base64 (encoding is %q): %v", EncodingBase64, err)
	}
	if n > MaxFileBytes {
		return 0, invalid(field+".content", "decodes to %d bytes, more than the %d-byte limit per file", n, MaxFileBytes)
	}
	return n, nil
}

// CleanPath validates a file path in a sandbox as files:write does (not
// empty, at most MaxPathBytes, UTF-8 without NUL, not escaping the sandbox
// root, not the root itself) and returns it cleaned with path.Clean (a
// leading "/" is kept). A bad path gives a *ValidationError naming field.
func CleanPath(field, p string) (string, error) { return cleanPath(field, p, false) }

// CheckSlug validates a server slug as the server task types do; a bad
// slug gives a *ValidationError naming field.
func CheckSlug(field, slug string) error { return checkSlug(field, slug) }
