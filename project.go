package sandboxq

import (
	"fmt"
	"strconv"
	"unicode"
	"unicode/utf8"
)

// DefaultNamespace is the namespace of a project whose namespace is empty
// (as the gateway does, computesdk-protocol.md §1.6).
const DefaultNamespace = "default"

// MaxNameLen is the maximum length of a namespace or name, in characters.
const MaxNameLen = 128

// Project identifies a project's sandbox (DESIGN.md §2). Every project task
// payload embeds it, so "namespace" and "name" sit at the top level of the
// payload JSON. An empty Namespace means DefaultNamespace.
type Project struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

// Validate checks the namespace (empty allowed) and the name: 1–128
// characters, no whitespace, control characters, { or }.
func (p Project) Validate() error {
	if p.Namespace != "" {
		if err := CheckName("namespace", p.Namespace); err != nil {
			return err
		}
	}
	return CheckName("name", p.Name)
}

// Normalize returns p with an empty namespace replaced by DefaultNamespace.
func (p Project) Normalize() Project {
	if p.Namespace == "" {
		p.Namespace = DefaultNamespace
	}
	return p
}

// ValidationError says which field of a payload is wrong and why. Field is a
// path such as "name", "files[3].path" or "steps[1].payload.slug".
type ValidationError struct {
	Field   string
	Message string
}

func (e *ValidationError) Error() string { return "invalid " + e.Field + ": " + e.Message }

// Invalid returns a *ValidationError for field with a formatted message.
func Invalid(field, format string, args ...any) *ValidationError {
	return &ValidationError{Field: field, Message: fmt.Sprintf(format, args...)}
}

// Quote quotes s for an error message, cut to a readable length.
func Quote(s string) string {
	const max = 64
	if utf8.RuneCountInString(s) > max {
		r := []rune(s)
		return strconv.Quote(string(r[:max])) + "…"
	}
	return strconv.Quote(s)
}

// CheckName validates a namespace or name (DESIGN.md §2) and names field in
// its error.
func CheckName(field, v string) error {
	if v == "" {
		return Invalid(field, "must not be empty")
	}
	if !utf8.ValidString(v) {
		return Invalid(field, "must be valid UTF-8")
	}
	if n := utf8.RuneCountInString(v); n > MaxNameLen {
		return Invalid(field, "must be at most %d characters, has %d", MaxNameLen, n)
	}
	for _, r := range v {
		switch {
		case unicode.IsSpace(r):
			return Invalid(field, "%s must not contain whitespace", Quote(v))
		case unicode.IsControl(r):
			return Invalid(field, "%s must not contain control characters", Quote(v))
		case r == '{' || r == '}':
			return Invalid(field, "%s must not contain { or }", Quote(v))
		}
	}
	return nil
}
