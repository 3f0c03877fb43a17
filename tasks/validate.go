package tasks

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path"
	"regexp"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/sandboxq/sandboxq"
)

// Input limits (DESIGN.md §11). Payloads that break them are rejected at
// enqueue with a *ValidationError.
const (
	// MaxNameLen is the maximum length of a namespace or name, in
	// characters.
	MaxNameLen = sandboxq.MaxNameLen
	// MaxPathBytes is the maximum length of a file path.
	MaxPathBytes = 4096
	// MaxFileBytes is the maximum content of one file (10 MiB).
	MaxFileBytes = 10 << 20
	// MaxTaskContentBytes is the maximum file content of one files:write
	// task (4 MiB); Client.WriteFiles splits larger sets. A single file
	// above it (up to MaxFileBytes) travels alone.
	MaxTaskContentBytes = 4 << 20
	// MaxFilesPerTask is the maximum number of files in one files:write
	// task; Client.WriteFiles splits larger sets.
	MaxFilesPerTask = 1000
	// MaxCommandBytes is the maximum length of a command or install
	// command.
	MaxCommandBytes = 64 << 10
	// MaxEnvKeyBytes is the maximum length of an environment variable name.
	MaxEnvKeyBytes = 256
	// MaxSlugLen is the maximum length of a server slug.
	MaxSlugLen = 64
	// MaxWorkflowSteps is the maximum number of steps of a workflow.
	MaxWorkflowSteps = 100
	// MaxPayloadBytes caps the encoded (uncompressed) JSON of any payload
	// (16 MiB).
	MaxPayloadBytes = 16 << 20
	// CompressThreshold is the encoded size above which a payload is stored
	// gzip-compressed (64 KiB).
	CompressThreshold = 64 << 10
	// maxDurationMS bounds millisecond durations (24 h).
	maxDurationMS = 24 * 60 * 60 * 1000
)

var (
	envKeyRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	slugRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
)

func invalid(field, format string, args ...any) *ValidationError {
	return sandboxq.Invalid(field, format, args...)
}

// quote quotes s for an error message, cut to a readable length.
func quote(s string) string { return sandboxq.Quote(s) }

// checkName validates a namespace or name (DESIGN.md §2).
func checkName(field, v string) error { return sandboxq.CheckName(field, v) }

// checkText rejects invalid UTF-8 and NUL bytes in free text.
func checkText(field, v string, max int) error {
	if len(v) > max {
		return invalid(field, "must be at most %d bytes, has %d", max, len(v))
	}
	if !utf8.ValidString(v) {
		return invalid(field, "must be valid UTF-8")
	}
	if strings.IndexByte(v, 0) >= 0 {
		return invalid(field, "must not contain NUL")
	}
	return nil
}

// checkToken validates a short identifier-like string (provider, template
// id): no whitespace or control characters.
func checkToken(field, v string, max int) error {
	if err := checkText(field, v, max); err != nil {
		return err
	}
	for _, r := range v {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return invalid(field, "%s must not contain whitespace or control characters", quote(v))
		}
	}
	return nil
}

// cleanPath validates a sandbox path and returns it normalized with
// path.Clean (a leading "/" is kept). Paths are resolved against the sandbox
// root: a path whose ".." would leave it is rejected, and so is the root
// itself unless allowRoot.
func cleanPath(field, p string, allowRoot bool) (string, error) {
	if p == "" {
		return "", invalid(field, "must not be empty")
	}
	if len(p) > MaxPathBytes {
		return "", invalid(field, "must be at most %d bytes, has %d", MaxPathBytes, len(p))
	}
	if strings.IndexByte(p, 0) >= 0 {
		return "", invalid(field, "must not contain NUL")
	}
	if !utf8.ValidString(p) {
		return "", invalid(field, "must be valid UTF-8")
	}
	rel := path.Clean(strings.TrimLeft(p, "/"))
	if rel == ".." || strings.HasPrefix(rel, "../") {
		return "", invalid(field, "%s escapes the sandbox root", quote(p))
	}
	if rel == "." && !allowRoot {
		return "", invalid(field, "%s names the sandbox root, not a file", quote(p))
	}
	return path.Clean(p), nil
}

// checkPath validates a path that may be empty (meaning "the default").
func checkOptionalPath(field, p string, allowRoot bool) error {
	if p == "" {
		return nil
	}
	_, err := cleanPath(field, p, allowRoot)
	return err
}

// normalizePath returns p cleaned when it is valid, else unchanged (so
// Validate reports the problem on the original).
func normalizePath(p string, allowRoot bool) string {
	if p == "" {
		return p
	}
	if c, err := cleanPath("", p, allowRoot); err == nil {
		return c
	}
	return p
}

func checkEnvKey(field, k string) error {
	if k == "" {
		return invalid(field, "variable name must not be empty")
	}
	if len(k) > MaxEnvKeyBytes {
		return invalid(field, "variable name %s is longer than %d bytes", quote(k), MaxEnvKeyBytes)
	}
	if !envKeyRE.MatchString(k) {
		return invalid(field, "variable name %s must match [A-Za-z_][A-Za-z0-9_]*", quote(k))
	}
	return nil
}

// checkEnv validates environment variables: names by checkEnvKey, values
// UTF-8 without NUL. Messages name keys, never values.
func checkEnv(field string, env map[string]string) error {
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys) // report the same key every time
	for _, k := range keys {
		if err := checkEnvKey(field, k); err != nil {
			return err
		}
		v := env[k]
		if !utf8.ValidString(v) || strings.IndexByte(v, 0) >= 0 {
			return invalid(field, "value of %s must be valid UTF-8 without NUL", k)
		}
	}
	return nil
}

func checkCommand(field, c string, required bool) error {
	if strings.TrimSpace(c) == "" {
		if required {
			return invalid(field, "must not be empty")
		}
		return nil
	}
	return checkText(field, c, MaxCommandBytes)
}

func checkSlug(field, s string) error {
	if s == "" {
		return invalid(field, "must not be empty")
	}
	if len(s) > MaxSlugLen || !slugRE.MatchString(s) {
		return invalid(field, "%s must be 1-%d characters of A-Z a-z 0-9 . _ - starting with a letter or digit", quote(s), MaxSlugLen)
	}
	return nil
}

func checkMS(field string, v int64) error {
	if v < 0 {
		return invalid(field, "must not be negative")
	}
	if v > maxDurationMS {
		return invalid(field, "must be at most %d (24 h)", maxDurationMS)
	}
	return nil
}

func checkWaitFor(field, v string) error {
	switch v {
	case "", WaitForReady, WaitForRunning:
		return nil
	}
	return invalid(field, "%s must be %q or %q", quote(v), WaitForReady, WaitForRunning)
}

func checkUTF8(field, v string) error {
	if !utf8.ValidString(v) {
		return invalid(field, "must be valid UTF-8 text (binary content is not supported)")
	}
	return nil
}

// CheckJSONUTF8 rejects an encoded payload holding invalid UTF-8, naming
// the field it is in (such as "name" or "files[2].path"). encoding/json
// would otherwise fold each bad byte to U+FFFD, so that two different byte
// strings became one name. DecodePayload calls it; the Go producer's
// strings are checked by Validate.
func CheckJSONUTF8(raw []byte) error {
	if utf8.Valid(raw) {
		return nil
	}
	bad := 0
	for bad < len(raw) {
		r, size := utf8.DecodeRune(raw[bad:])
		if r == utf8.RuneError && size <= 1 {
			break
		}
		bad += size
	}
	field := jsonFieldAt(raw, int64(bad))
	if field == "" {
		field = "payload"
	}
	return invalid(field, "must be valid UTF-8 (byte %d of the payload is not)", bad)
}

// jsonFrame is one open object or array of jsonFieldAt's walk.
type jsonFrame struct {
	path    string
	obj     bool
	wantKey bool
	key     string
	idx     int
}

func (f *jsonFrame) child() string {
	if !f.obj {
		return fmt.Sprintf("%s[%d]", f.path, f.idx)
	}
	if f.path == "" {
		return f.key
	}
	return f.path + "." + f.key
}

// jsonFieldAt returns the path of the JSON value (or object key) that holds
// byte offset off of raw, or "" at the top level.
func jsonFieldAt(raw []byte, off int64) string {
	dec := json.NewDecoder(bytes.NewReader(raw))
	var stack []*jsonFrame
	for {
		tok, err := dec.Token()
		top := (*jsonFrame)(nil)
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if err != nil || dec.InputOffset() > off {
			switch {
			case top == nil:
				return ""
			case top.obj && top.wantKey:
				return top.path // a bad key: name the object
			}
			return top.child()
		}
		switch d, _ := tok.(json.Delim); {
		case top != nil && top.obj && top.wantKey && d == 0:
			top.key, top.wantKey = fmt.Sprint(tok), false
			continue
		case d == '{' || d == '[':
			path := ""
			if top != nil {
				path = top.child()
			}
			stack = append(stack, &jsonFrame{path: path, obj: d == '{', wantKey: d == '{'})
			continue
		case d == '}' || d == ']':
			stack = stack[:len(stack)-1]
			if len(stack) == 0 {
				return ""
			}
			top = stack[len(stack)-1]
		}
		if top != nil {
			top.wantKey = top.obj
			top.idx++
		}
	}
}
