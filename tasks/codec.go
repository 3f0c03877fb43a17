package tasks

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"

	"github.com/hibiken/asynq"
)

// Compression of large payloads. A payload whose JSON is larger than
// CompressThreshold is stored gzip-compressed and the task carries the
// header HeaderContentEncoding: EncodingGzip. Readers that see no headers
// (Asynqmon's payload formatter) recognise the gzip magic bytes instead;
// JSON never starts with them.
const (
	HeaderContentEncoding = "content-encoding"
	EncodingGzip          = "gzip"
)

// ErrUnknownType is returned for a task type that is not in the catalogue.
var ErrUnknownType = errors.New("unknown task type")

// PayloadError is the error of Decode and DecodePayload: the payload of a
// task of type Type cannot be used. It wraps the cause (often a
// *ValidationError) and asynq.SkipRetry, since retrying cannot fix it.
type PayloadError struct {
	Type string
	Err  error
}

func (e *PayloadError) Error() string { return e.Type + " payload: " + e.Err.Error() }

func (e *PayloadError) Unwrap() []error { return []error{e.Err, asynq.SkipRetry} }

// New normalizes p (default namespace, cleaned paths), validates it, encodes
// it as JSON (gzip above CompressThreshold) and returns the task with p's
// default options followed by extra, so extra wins.
func New[P Payload](p P, extra ...asynq.Option) (*asynq.Task, error) {
	raw, headers, err := encode(p)
	if err != nil {
		return nil, err
	}
	var opts []asynq.Option
	if o, ok := any(p).(optioner); ok {
		opts = append(opts, o.Options()...)
	}
	opts = append(opts, extra...)
	return asynq.NewTaskWithHeaders(p.TypeName(), raw, headers, opts...), nil
}

// encode normalizes, validates and encodes p.
func encode[P Payload](p P) ([]byte, map[string]string, error) {
	if isNil(p) {
		return nil, nil, errors.New("tasks: nil payload")
	}
	p = normalize(p)
	if err := p.Validate(); err != nil {
		return nil, nil, err
	}
	raw, err := json.Marshal(p)
	if err != nil {
		return nil, nil, fmt.Errorf("encode %s payload: %w", p.TypeName(), err)
	}
	if len(raw) > MaxPayloadBytes {
		return nil, nil, invalid("payload", "encoded size of %d bytes is more than the %d-byte limit", len(raw), MaxPayloadBytes)
	}
	if len(raw) <= CompressThreshold {
		return raw, nil, nil
	}
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	if _, err := zw.Write(raw); err != nil {
		return nil, nil, fmt.Errorf("compress %s payload: %w", p.TypeName(), err)
	}
	if err := zw.Close(); err != nil {
		return nil, nil, fmt.Errorf("compress %s payload: %w", p.TypeName(), err)
	}
	return buf.Bytes(), map[string]string{HeaderContentEncoding: EncodingGzip}, nil
}

// Uncompress returns a task payload's JSON: payload itself, or its gzip
// decompression when headers say so or it starts with the gzip magic.
// headers may be nil. The result is capped at MaxPayloadBytes.
func Uncompress(payload []byte, headers map[string]string) ([]byte, error) {
	enc := headers[HeaderContentEncoding]
	switch {
	case enc == EncodingGzip || isGzip(payload):
	case enc == "" || enc == "identity":
		return payload, nil
	default:
		return nil, fmt.Errorf("unsupported %s %q", HeaderContentEncoding, enc)
	}
	zr, err := gzip.NewReader(bytes.NewReader(payload))
	if err != nil {
		return nil, fmt.Errorf("decompress payload: %w", err)
	}
	defer zr.Close()
	raw, err := readSized(io.LimitReader(zr, MaxPayloadBytes+1), gzipSize(payload))
	if err != nil {
		return nil, fmt.Errorf("decompress payload: %w", err)
	}
	if len(raw) > MaxPayloadBytes {
		return nil, fmt.Errorf("decompressed payload is larger than %d bytes", MaxPayloadBytes)
	}
	return raw, nil
}

// gzipSize is the uncompressed size a gzip stream's trailer states
// (ISIZE, the size modulo 2³² of its last member), capped at
// MaxPayloadBytes: a hint, not a promise.
func gzipSize(payload []byte) int {
	if len(payload) < 18 {
		return 0
	}
	return int(min(binary.LittleEndian.Uint32(payload[len(payload)-4:]), MaxPayloadBytes))
}

// readSized reads r to its end into a buffer of size+1 bytes, growing it
// only if r holds more: read with the right size, a large payload costs
// its size once instead of the copies and spare capacity of a growing
// buffer.
func readSized(r io.Reader, size int) ([]byte, error) {
	buf := make([]byte, 0, size+1)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// isNil reports whether p is nil or a nil pointer.
func isNil(p any) bool {
	if p == nil {
		return true
	}
	rv := reflect.ValueOf(p)
	return rv.Kind() == reflect.Pointer && rv.IsNil()
}

func isGzip(b []byte) bool { return len(b) >= 2 && b[0] == 0x1f && b[1] == 0x8b }

// Decode returns the payload of t as P: it checks the type name,
// decompresses, decodes the JSON (unknown fields are ignored), normalizes
// and validates. Every error is a *PayloadError, which wraps
// asynq.SkipRetry.
func Decode[P Payload](t *asynq.Task) (P, error) {
	var zero P
	if t == nil {
		return zero, &PayloadError{Type: "(nil)", Err: errors.New("nil task")}
	}
	if any(zero) == nil {
		// P is an interface type: decode by the task's own type name.
		p, err := DecodePayload(t.Type(), t.Payload(), t.Headers())
		if err != nil {
			return zero, err
		}
		if q, ok := p.(P); ok {
			return q, nil
		}
		return zero, &PayloadError{Type: t.Type(), Err: fmt.Errorf("payload %T is not a %T", p, &zero)}
	}
	var p P
	if rv := reflect.ValueOf(&p).Elem(); rv.Kind() == reflect.Pointer {
		rv.Set(reflect.New(rv.Type().Elem())) // P is a pointer to a payload
	}
	if want := p.TypeName(); t.Type() != want {
		return zero, &PayloadError{Type: t.Type(), Err: fmt.Errorf("task type %q, want %q", t.Type(), want)}
	}
	if err := unmarshal(t, &p); err != nil {
		return zero, &PayloadError{Type: t.Type(), Err: err}
	}
	p = normalize(p)
	if err := p.Validate(); err != nil {
		return zero, &PayloadError{Type: t.Type(), Err: err}
	}
	return p, nil
}

// unmarshal decodes t's payload into p: a compressed files:write payload
// with decodeFiles, which keeps one copy of the content, anything else (and
// whatever decodeFiles leaves) with encoding/json.
func unmarshal(t *asynq.Task, p any) error {
	if fw, ok := p.(*FilesWrite); ok && t.Type() == TypeFilesWrite {
		enc := t.Headers()[HeaderContentEncoding]
		if enc == EncodingGzip || isGzip(t.Payload()) {
			// Uncompress returns a buffer of its own: decodeFiles may
			// write over it.
			if raw, err := Uncompress(t.Payload(), t.Headers()); err == nil {
				if q, err := decodeFiles(raw); err == nil {
					*fw = q
					return nil
				}
			}
		}
	}
	raw, err := Uncompress(t.Payload(), t.Headers())
	if err != nil {
		return err
	}
	if err := json.Unmarshal(raw, p); err != nil {
		return jsonError("", err)
	}
	return nil
}

// DecodePayload decodes a payload of the catalogue by type name, as Decode
// does: payload may be compressed (headers may be nil; the gzip magic is
// recognised). The result is the payload struct as a value (e.g.
// tasks.FilesWrite). An unknown type gives a *PayloadError wrapping
// ErrUnknownType.
func DecodePayload(typename string, payload []byte, headers map[string]string) (Payload, error) {
	dec, ok := payloadTypes[typename]
	if !ok {
		return nil, &PayloadError{Type: typename, Err: ErrUnknownType}
	}
	raw, err := Uncompress(payload, headers)
	if err != nil {
		return nil, &PayloadError{Type: typename, Err: err}
	}
	if err := CheckJSONUTF8(raw); err != nil {
		return nil, &PayloadError{Type: typename, Err: err}
	}
	p, err := dec(raw)
	if err != nil {
		return nil, &PayloadError{Type: typename, Err: jsonError("", err)}
	}
	if err := p.Validate(); err != nil {
		return nil, &PayloadError{Type: typename, Err: err}
	}
	return p, nil
}

// ProjectOf returns the project a task is about, read from its payload
// (namespace defaulted). ok is false for tasks without a project (the
// maintenance types) and for payloads that cannot be read. It streams the
// payload (see scanProject): a large payload is not decoded into memory.
func ProjectOf(t *asynq.Task) (p Project, ok bool) {
	if t == nil {
		return Project{}, false
	}
	r, done, err := payloadReader(t.Payload(), t.Headers())
	if err != nil {
		return Project{}, false
	}
	defer done()
	size := len(t.Payload())
	if _, plain := r.(*bytes.Reader); !plain {
		size = MaxPayloadBytes
	}
	p, err = scanProject(r, scanBuffer(size))
	if err != nil || p.Name == "" {
		return Project{}, false
	}
	return p.Normalize(), true
}
