package sandboxq

import (
	"sort"
	"strings"
)

// The tail of a server's output that travels with its failure (the result
// of server:start and server:restart, the server.status_changed event).
const (
	LogTailLines = 50
	LogTailBytes = 8 << 10
)

// LastLines returns the last n lines of s (a trailing newline does not
// start a line).
func LastLines(s string, n int) string {
	if n <= 0 {
		return ""
	}
	end := len(s)
	if strings.HasSuffix(s, "\n") {
		end--
	}
	i := end
	for range n {
		j := strings.LastIndexByte(s[:i], '\n')
		if j < 0 {
			return s
		}
		i = j
		if i == 0 {
			break
		}
	}
	if i == 0 && s[0] != '\n' {
		return s
	}
	return s[i+1:]
}

// LogTail returns the last LogTailLines lines of s, at most LogTailBytes
// (cut at a line or, for one long line, a UTF-8 boundary), with every
// occurrence of a value of env replaced by "[redacted]" (values shorter
// than 4 bytes are left: they would mask ordinary words).
func LogTail(s string, env map[string]string) string {
	s = MaskValues(s, env)
	s = LastLines(s, LogTailLines)
	if len(s) <= LogTailBytes {
		return s
	}
	cut := len(s) - LogTailBytes
	if i := strings.IndexByte(s[cut:], '\n'); i >= 0 && i < len(s)-cut-1 {
		return s[cut+i+1:]
	}
	for cut < len(s) && s[cut]&0xC0 == 0x80 {
		cut++
	}
	return s[cut:]
}

// MaskValues replaces every value of env (4 bytes or longer) found in s by
// "[redacted]", longest values first.
func MaskValues(s string, env map[string]string) string {
	vals := make([]string, 0, len(env))
	for _, v := range env {
		if len(v) >= 4 {
			vals = append(vals, v)
		}
	}
	if len(vals) == 0 {
		return s
	}
	sort.Slice(vals, func(i, j int) bool { return len(vals[i]) > len(vals[j]) })
	args := make([]string, 0, 2*len(vals))
	for _, v := range vals {
		args = append(args, v, "[redacted]")
	}
	return strings.NewReplacer(args...).Replace(s)
}
