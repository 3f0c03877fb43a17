package wsbin

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
)

// Frame kinds (protocol §3.3).
const (
	KindSubscribe   byte = 0x01
	KindUnsubscribe byte = 0x02
	KindData        byte = 0x03
	KindError       byte = 0x04
	KindConnected   byte = 0x05
)

// KV value types.
const (
	ValueString byte = 0x01
	ValueNumber byte = 0x02
	ValueBool   byte = 0x03
	ValueBytes  byte = 0x04
)

// Length limits imposed by the length prefixes.
const (
	MaxChannelLen = math.MaxUint16
	MaxTypeLen    = math.MaxUint16
	MaxPayloadLen = math.MaxUint32
	MaxKeyLen     = math.MaxUint16
	MaxFields     = math.MaxUint16
	MaxValueLen   = math.MaxUint32
)

// ErrMalformed is wrapped by every error of Decode, DecodeKV and
// DecodeFields.
var ErrMalformed = errors.New("wsbin: malformed")

// frameHeader is the size of a frame with empty channel, type and payload.
const frameHeader = 1 + 2 + 2 + 4

// Frame is one binary WebSocket message.
type Frame struct {
	Kind    byte
	Channel string
	Type    string
	Payload []byte
}

func knownKind(k byte) bool { return k >= KindSubscribe && k <= KindConnected }

// Decode parses one frame. b must hold exactly one frame: a short or long
// input is an error. The Payload is a copy; b may be reused.
func Decode(b []byte) (Frame, error) {
	r := reader{b: b}
	kind, err := r.u8("frame kind")
	if err != nil {
		return Frame{}, err
	}
	if !knownKind(kind) {
		return Frame{}, malformed("unknown frame kind 0x%02x", kind)
	}
	ch, err := r.str16("channel")
	if err != nil {
		return Frame{}, err
	}
	typ, err := r.str16("message type")
	if err != nil {
		return Frame{}, err
	}
	n, err := r.u32("payload length")
	if err != nil {
		return Frame{}, err
	}
	p, err := r.take(int(n), "payload")
	if err != nil {
		return Frame{}, err
	}
	if err := r.end("frame"); err != nil {
		return Frame{}, err
	}
	return Frame{Kind: kind, Channel: ch, Type: typ, Payload: slices.Clone(p)}, nil
}

// Encode serialises f. It fails on an unknown kind or a field too long for
// its length prefix.
func (f Frame) Encode() ([]byte, error) {
	if !knownKind(f.Kind) {
		return nil, fmt.Errorf("wsbin: encode frame: unknown kind 0x%02x", f.Kind)
	}
	if len(f.Channel) > MaxChannelLen {
		return nil, fmt.Errorf("wsbin: encode frame: channel is %d bytes, more than %d", len(f.Channel), MaxChannelLen)
	}
	if len(f.Type) > MaxTypeLen {
		return nil, fmt.Errorf("wsbin: encode frame: message type is %d bytes, more than %d", len(f.Type), MaxTypeLen)
	}
	if uint64(len(f.Payload)) > MaxPayloadLen {
		return nil, fmt.Errorf("wsbin: encode frame: payload is %d bytes, more than %d", len(f.Payload), uint64(MaxPayloadLen))
	}
	out := make([]byte, 0, frameHeader+len(f.Channel)+len(f.Type)+len(f.Payload))
	out = append(out, f.Kind)
	out = binary.BigEndian.AppendUint16(out, uint16(len(f.Channel)))
	out = append(out, f.Channel...)
	out = binary.BigEndian.AppendUint16(out, uint16(len(f.Type)))
	out = append(out, f.Type...)
	out = binary.BigEndian.AppendUint32(out, uint32(len(f.Payload)))
	return append(out, f.Payload...), nil
}

// KV decodes f's payload as a key/value block.
func (f Frame) KV() (map[string]any, error) { return DecodeKV(f.Payload) }

// EncodeData builds a Data frame whose payload is the KV block of data.
func EncodeData(channel, msgType string, data map[string]any) ([]byte, error) {
	p, err := EncodeKV(data)
	if err != nil {
		return nil, err
	}
	return Frame{Kind: KindData, Channel: channel, Type: msgType, Payload: p}.Encode()
}

// Field is one entry of a KV block. Value is a string, float64, bool or
// []byte once decoded; for encoding see EncodeKV.
type Field struct {
	Key   string
	Value any
}

// DecodeFields parses a KV block keeping the order of its fields. An empty
// input is an empty block (the JS client decodes it to {}). Duplicate keys,
// unknown value types, a number that is not 8 bytes, a bool that is not one
// byte 0 or 1, and trailing bytes are errors.
func DecodeFields(b []byte) ([]Field, error) {
	if len(b) == 0 {
		return nil, nil
	}
	r := reader{b: b}
	count, err := r.u16("field count")
	if err != nil {
		return nil, err
	}
	// Each field takes at least 7 bytes; do not trust count for the size.
	fields := make([]Field, 0, min(int(count), r.left()/7))
	seen := make(map[string]struct{}, cap(fields))
	for i := range int(count) {
		f, err := r.field()
		if err != nil {
			return nil, fmt.Errorf("%w (field %d of %d)", err, i+1, count)
		}
		if _, dup := seen[f.Key]; dup {
			return nil, malformed("duplicate key %q", f.Key)
		}
		seen[f.Key] = struct{}{}
		fields = append(fields, f)
	}
	if err := r.end("KV block"); err != nil {
		return nil, err
	}
	return fields, nil
}

// field reads one KV entry.
func (r *reader) field() (Field, error) {
	key, err := r.str16("key")
	if err != nil {
		return Field{}, err
	}
	vt, err := r.u8("value type")
	if err == nil && (vt < ValueString || vt > ValueBytes) {
		err = malformed("unknown value type 0x%02x", vt)
	}
	var n uint32
	if err == nil {
		n, err = r.u32("value length")
	}
	var v []byte
	if err == nil {
		v, err = r.take(int(n), "value")
	}
	if err != nil {
		return Field{}, fmt.Errorf("%w, key %q", err, key)
	}
	switch vt {
	case ValueString:
		return Field{key, string(v)}, nil
	case ValueNumber:
		if len(v) != 8 {
			return Field{}, malformed("number %q is %d bytes, want 8", key, len(v))
		}
		return Field{key, math.Float64frombits(binary.BigEndian.Uint64(v))}, nil
	case ValueBool:
		if len(v) != 1 || v[0] > 1 {
			return Field{}, malformed("bool %q is not a single byte 0 or 1", key)
		}
		return Field{key, v[0] == 1}, nil
	default: // ValueBytes
		return Field{key, slices.Clone(v)}, nil
	}
}

// DecodeKV parses a KV block into a map (see DecodeFields).
func DecodeKV(b []byte) (map[string]any, error) {
	fields, err := DecodeFields(b)
	if err != nil {
		return nil, err
	}
	m := make(map[string]any, len(fields))
	for _, f := range fields {
		m[f.Key] = f.Value
	}
	return m, nil
}

// EncodeKV serialises m as a KV block with its keys in sorted order, so
// equal maps give equal bytes. Values may be string, []byte, bool, float64,
// float32 or any integer type (sent as float64, like every number on this
// wire; integers beyond 2^53 lose precision). nil, maps, slices other than
// []byte and other types are errors naming the key.
func EncodeKV(m map[string]any) ([]byte, error) {
	fields := make([]Field, 0, len(m))
	for k, v := range m {
		fields = append(fields, Field{Key: k, Value: v})
	}
	slices.SortFunc(fields, func(a, b Field) int { return strings.Compare(a.Key, b.Key) })
	return EncodeFields(fields)
}

// EncodeFields serialises fields as a KV block in the given order; values as
// for EncodeKV. Duplicate keys are an error.
func EncodeFields(fields []Field) ([]byte, error) {
	if len(fields) > MaxFields {
		return nil, fmt.Errorf("wsbin: encode KV: %d fields, more than %d", len(fields), MaxFields)
	}
	size := 2
	for _, f := range fields {
		size += 2 + len(f.Key) + 1 + 4
	}
	out := make([]byte, 0, size)
	out = binary.BigEndian.AppendUint16(out, uint16(len(fields)))
	seen := make(map[string]struct{}, len(fields))
	for _, f := range fields {
		if len(f.Key) > MaxKeyLen {
			return nil, fmt.Errorf("wsbin: encode KV: key is %d bytes, more than %d", len(f.Key), MaxKeyLen)
		}
		if _, dup := seen[f.Key]; dup {
			return nil, fmt.Errorf("wsbin: encode KV: duplicate key %q", f.Key)
		}
		seen[f.Key] = struct{}{}
		vt, v, err := encodeValue(f.Value)
		if err != nil {
			return nil, fmt.Errorf("wsbin: encode KV: key %q: %w", f.Key, err)
		}
		if uint64(len(v)) > MaxValueLen {
			return nil, fmt.Errorf("wsbin: encode KV: key %q: value is %d bytes, more than %d", f.Key, len(v), uint64(MaxValueLen))
		}
		out = binary.BigEndian.AppendUint16(out, uint16(len(f.Key)))
		out = append(out, f.Key...)
		out = append(out, vt)
		out = binary.BigEndian.AppendUint32(out, uint32(len(v)))
		out = append(out, v...)
	}
	return out, nil
}

func encodeValue(v any) (byte, []byte, error) {
	num := func(f float64) (byte, []byte, error) {
		return ValueNumber, binary.BigEndian.AppendUint64(nil, math.Float64bits(f)), nil
	}
	switch v := v.(type) {
	case string:
		return ValueString, []byte(v), nil
	case []byte:
		return ValueBytes, v, nil
	case bool:
		if v {
			return ValueBool, []byte{1}, nil
		}
		return ValueBool, []byte{0}, nil
	case float64:
		return num(v)
	case float32:
		return num(float64(v))
	case int:
		return num(float64(v))
	case int8:
		return num(float64(v))
	case int16:
		return num(float64(v))
	case int32:
		return num(float64(v))
	case int64:
		return num(float64(v))
	case uint:
		return num(float64(v))
	case uint8:
		return num(float64(v))
	case uint16:
		return num(float64(v))
	case uint32:
		return num(float64(v))
	case uint64:
		return num(float64(v))
	case nil:
		return 0, nil, errors.New("nil value (the binary protocol has no null)")
	}
	return 0, nil, fmt.Errorf("unsupported value type %T (want string, number, bool or []byte; no nesting)", v)
}

// kvTypes are the message types whose payload the JS client decodes as a
// KV block; it hands any other payload to handlers as raw bytes.
var kvTypes = map[string]bool{
	"terminal:input":  true,
	"terminal:resize": true,
	"terminal:output": true,
	"file:changed":    true,
	"signal":          true,
	"test":            true,
}

// ClientDecodesKV reports whether the JS client decodes the payload of a
// binary frame of msgType as a KV block (protocol §3.3, quirk 1). Messages
// of other types must reach a binary-protocol client as JSON text frames.
func ClientDecodesKV(msgType string) bool { return kvTypes[msgType] }

// reader walks a byte slice; its errors say which field ran short.
type reader struct {
	b   []byte
	off int
}

func (r *reader) left() int { return len(r.b) - r.off }

func (r *reader) take(n int, what string) ([]byte, error) {
	if n < 0 || n > r.left() {
		return nil, malformed("truncated: %s needs %d bytes at offset %d, %d left", what, n, r.off, r.left())
	}
	p := r.b[r.off : r.off+n]
	r.off += n
	return p, nil
}

func (r *reader) u8(what string) (byte, error) {
	p, err := r.take(1, what)
	if err != nil {
		return 0, err
	}
	return p[0], nil
}

func (r *reader) u16(what string) (uint16, error) {
	p, err := r.take(2, what)
	if err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint16(p), nil
}

func (r *reader) u32(what string) (uint32, error) {
	p, err := r.take(4, what)
	if err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint32(p), nil
}

// str16 reads a u16 length and that many bytes.
func (r *reader) str16(what string) (string, error) {
	n, err := r.u16(what + " length")
	if err != nil {
		return "", err
	}
	p, err := r.take(int(n), what)
	if err != nil {
		return "", err
	}
	return string(p), nil
}

func (r *reader) end(what string) error {
	if n := r.left(); n > 0 {
		return malformed("%d unexpected bytes after the %s", n, what)
	}
	return nil
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}
