// Package secret holds the Secret type: a string that never prints.
//
// API keys, sandbox tokens and events access tokens travel through sandboxq as
// Secret values. fmt, log/slog and encoding/json all see "[redacted]"; only an
// explicit call to Reveal gives the value, and only code that puts it on the
// wire (an HTTP header, a query parameter) should make that call.
package secret

import (
	"fmt"
	"log/slog"
)

const redacted = "[redacted]"

// Secret is a credential. The zero value is the empty secret.
//
// The value sits behind a pointer: fmt prints a struct's unexported fields
// without calling their methods, so a Secret held in an unexported field of
// some other struct would otherwise print in full under %+v. Behind a
// pointer it prints as an address.
type Secret struct{ v *string }

// New wraps s.
func New(s string) Secret {
	if s == "" {
		return Secret{}
	}
	return Secret{v: &s}
}

// Reveal returns the underlying value. Call it only where the value goes on
// the wire.
func (s Secret) Reveal() string {
	if s.v == nil {
		return ""
	}
	return *s.v
}

// IsZero reports whether the secret is empty.
func (s Secret) IsZero() bool { return s.v == nil }

// String implements fmt.Stringer and always redacts.
func (s Secret) String() string {
	if s.v == nil {
		return ""
	}
	return redacted
}

// GoString implements fmt.GoStringer (%#v) and always redacts.
func (s Secret) GoString() string { return "secret.Secret{" + s.String() + "}" }

// LogValue implements slog.LogValuer.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText implements encoding.TextMarshaler so JSON, YAML and env dumps
// never carry the value.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler, so configuration
// loaders can fill a Secret directly.
func (s *Secret) UnmarshalText(b []byte) error {
	*s = New(string(b))
	return nil
}

// Format implements fmt.Formatter so every verb (%v, %s, %q, %x, %+v) redacts.
func (s Secret) Format(f fmt.State, verb rune) {
	switch verb {
	case 'q':
		_, _ = f.Write([]byte(`"` + s.String() + `"`))
	default:
		_, _ = f.Write([]byte(s.String()))
	}
}
