// Package wsbin is the codec of the daemon WebSocket's binary protocol
// (computesdk-protocol.md §3.3), used by the local provider for sockets
// opened with protocol=binary.
//
// A frame is
//
//	u8 kind · u16 len + channel · u16 len + message type · u32 len + payload
//
// big-endian, and an object payload is a KV block
//
//	u16 count, then per field: u16 len + key · u8 value type · u32 len + value
//
// with value types string (0x01), float64 number (0x02, always 8 bytes),
// bool (0x03, one byte 0 or 1) and raw bytes (0x04). There is no null,
// nesting or array.
//
// Decisions:
//
//   - Decoding is strict: the input must hold exactly one frame or block
//     (short or trailing bytes are errors), kinds outside 0x01–0x05 and value
//     types outside 0x01–0x04 are rejected, and so are duplicate keys (no
//     known client can produce them). Lengths are checked against the bytes
//     present before anything is allocated, so a hostile length prefix costs
//     nothing. Every decode error wraps ErrMalformed and says which field ran
//     short and where.
//   - Strings are not checked for UTF-8: the bytes are kept as they are, so
//     decoding and encoding again gives back the input, and terminal output
//     cut in the middle of a character still travels.
//   - EncodeKV sorts keys so equal maps give equal bytes. When the order
//     matters (matching a client byte for byte), DecodeFields and
//     EncodeFields keep it.
//   - Numbers: every Go integer and float type encodes as float64, as the JS
//     client sends cols/rows; decoding always yields float64.
//   - Decode copies the payload, so the read buffer may be reused.
//
// The JS client decodes the payload of a binary frame as a KV block only for
// a few message types (ClientDecodesKV); a server must send every other
// message to a binary-protocol client as a JSON text frame.
package wsbin
