package local

import (
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"

	"github.com/sandboxq/sandboxq/gateway"
)

var (
	// envKeyRE is what a written key must look like.
	envKeyRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	// envReadKeyRE is what a read key may look like (dotenv is lenient).
	envReadKeyRE = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)
	// envBareRE is a value that needs no quoting.
	envBareRE = regexp.MustCompile(`^[A-Za-z0-9_./:@%+,=-]*$`)
)

// serveEnv handles GET/POST/DELETE/HEAD /env?file=.
func (s *sandbox) serveEnv(w http.ResponseWriter, r *http.Request) {
	file := r.URL.Query().Get("file")
	if file == "" {
		writeDaemonError(w, http.StatusBadRequest, "file query parameter is required (e.g. ?file=.env)")
		return
	}
	host, err := resolvePath(s.dir, file)
	if err != nil {
		writeDaemonError(w, statusOf(err), err.Error())
		return
	}
	sp := sandboxPath(file)
	answer := func(msg string, data any, err error) {
		if err != nil {
			writeDaemonError(w, statusOf(err), err.Error())
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"status": "success", "message": msg, "data": data})
	}
	switch r.Method {
	case http.MethodHead:
		if _, err := s.fsRoot.Stat(s.rel(host)); err != nil {
			w.WriteHeader(statusOf(fsErr("stat", sp, err)))
			return
		}
		w.WriteHeader(http.StatusOK)
	case http.MethodGet:
		vars, err := s.readEnv(host, sp)
		answer("Environment variables retrieved", gateway.EnvFile{File: file, Variables: vars}, err)
	case http.MethodPost:
		var body struct {
			Variables map[string]string `json:"variables"`
		}
		if err := decodeBody(r, &body, maxJSONBody, false); err != nil {
			answer("", nil, err)
			return
		}
		keys, err := s.updateEnv(host, sp, body.Variables, nil)
		answer("Environment variables updated", gateway.EnvChange{File: file, Keys: keys}, err)
	case http.MethodDelete:
		var body struct {
			Keys []string `json:"keys"`
		}
		if err := decodeBody(r, &body, maxJSONBody, false); err != nil {
			answer("", nil, err)
			return
		}
		keys, err := s.updateEnv(host, sp, nil, body.Keys)
		answer("Environment variables deleted", gateway.EnvChange{File: file, Keys: keys}, err)
	default:
		allowMethod(w, r, false, http.MethodGet, http.MethodPost, http.MethodDelete, http.MethodHead)
	}
}

// readEnv returns the variables of an env file; a missing file has none.
func (s *sandbox) readEnv(host, sp string) (map[string]string, error) {
	unlock := s.files.lock(host)
	defer unlock()
	content, err := s.readLocked(host, sp)
	if err != nil {
		if statusOf(err) == http.StatusNotFound {
			return map[string]string{}, nil
		}
		return nil, err
	}
	return envVars(parseDotenv(content)), nil
}

// updateEnv sets and removes variables in an env file under its path
// lock, keeping comments, order and unrelated lines. It returns the keys
// set, or the keys that were present and removed, sorted.
func (s *sandbox) updateEnv(host, sp string, set map[string]string, remove []string) ([]string, error) {
	for k, v := range set {
		if !envKeyRE.MatchString(k) {
			return nil, badRequest("variable name %q is invalid (letters, digits and _, not starting with a digit)", k)
		}
		if strings.IndexByte(v, 0) >= 0 {
			return nil, badRequest("value of %s contains a NUL byte", k)
		}
	}
	for _, k := range remove {
		if k == "" {
			return nil, badRequest("keys contains an empty name")
		}
	}
	unlock := s.files.lock(host)
	defer unlock()
	content, err := s.readLocked(host, sp)
	if err != nil {
		if statusOf(err) != http.StatusNotFound {
			return nil, err
		}
		content = ""
	}
	entries := parseDotenv(content)
	var changed []string
	if set != nil {
		entries = setEnv(entries, set)
		changed = slices.Sorted(func(yield func(string) bool) {
			for k := range set {
				if !yield(k) {
					return
				}
			}
		})
	}
	if remove != nil {
		present := envVars(entries)
		for _, k := range remove {
			if _, ok := present[k]; ok && !slices.Contains(changed, k) {
				changed = append(changed, k)
			}
		}
		slices.Sort(changed)
		entries = slices.DeleteFunc(entries, func(e envEntry) bool { return e.key != "" && slices.Contains(remove, e.key) })
	}
	if changed == nil {
		changed = []string{}
	}
	var b strings.Builder
	for _, e := range entries {
		b.WriteString(e.raw)
	}
	if _, err := s.writeLocked(host, sp, b.String()); err != nil {
		return nil, err
	}
	return changed, nil
}

// envEntry is one piece of a dotenv file: a variable (key set) or any
// other text (comments, blank or unparsable lines), with its raw text
// including the line break.
type envEntry struct {
	raw   string
	key   string
	value string
}

// parseDotenv parses dotenv text: KEY=VALUE lines, optional "export ",
// "#" comments (also after an unquoted value, when preceded by a space),
// 'single-quoted' literal values, and "double-quoted" values with \n, \r,
// \t, \", \\ and \$ escapes; quoted values may span lines. Lines that are
// not assignments are kept as text.
func parseDotenv(src string) []envEntry {
	var out []envEntry
	for len(src) > 0 {
		if e, n, ok := parseAssignment(src); ok {
			out = append(out, e)
			src = src[n:]
			continue
		}
		n := strings.IndexByte(src, '\n')
		if n < 0 {
			n = len(src)
		} else {
			n++
		}
		out = append(out, envEntry{raw: src[:n]})
		src = src[n:]
	}
	return out
}

// parseAssignment parses one assignment at the start of src and returns
// it with the number of bytes it used (through its line break).
func parseAssignment(src string) (envEntry, int, bool) {
	i := 0
	skipBlanks := func() {
		for i < len(src) && (src[i] == ' ' || src[i] == '\t') {
			i++
		}
	}
	skipBlanks()
	if strings.HasPrefix(src[i:], "export ") {
		i += len("export ")
		skipBlanks()
	}
	start := i
	for i < len(src) && src[i] != '=' && src[i] != '\n' {
		i++
	}
	if i >= len(src) || src[i] != '=' {
		return envEntry{}, 0, false
	}
	key := strings.TrimRight(src[start:i], " \t")
	if !envReadKeyRE.MatchString(key) {
		return envEntry{}, 0, false
	}
	i++ // '='
	skipBlanks()
	var value string
	switch {
	case i < len(src) && src[i] == '\'':
		end := strings.IndexByte(src[i+1:], '\'')
		if end < 0 {
			return envEntry{}, 0, false
		}
		value = src[i+1 : i+1+end]
		i += end + 2
	case i < len(src) && src[i] == '"':
		var b strings.Builder
		j := i + 1
		closed := false
		for j < len(src) {
			c := src[j]
			if c == '"' {
				closed = true
				j++
				break
			}
			if c == '\\' && j+1 < len(src) {
				switch src[j+1] {
				case 'n':
					b.WriteByte('\n')
				case 'r':
					b.WriteByte('\r')
				case 't':
					b.WriteByte('\t')
				case '"', '\\', '$', '\'':
					b.WriteByte(src[j+1])
				default:
					b.WriteByte('\\')
					b.WriteByte(src[j+1])
				}
				j += 2
				continue
			}
			b.WriteByte(c)
			j++
		}
		if !closed {
			return envEntry{}, 0, false
		}
		value = b.String()
		i = j
	default:
		end := strings.IndexByte(src[i:], '\n')
		if end < 0 {
			end = len(src) - i
		}
		v := src[i : i+end]
		if k := strings.Index(v, " #"); k >= 0 {
			v = v[:k]
		} else if k := strings.Index(v, "\t#"); k >= 0 {
			v = v[:k]
		} else if strings.HasPrefix(v, "#") {
			v = ""
		}
		value = strings.TrimRight(v, " \t\r")
		i += end
	}
	// Rest of the line: blanks and an optional comment.
	if nl := strings.IndexByte(src[i:], '\n'); nl >= 0 {
		i += nl + 1
	} else {
		i = len(src)
	}
	return envEntry{raw: src[:i], key: key, value: value}, i, true
}

func envVars(entries []envEntry) map[string]string {
	out := make(map[string]string)
	for _, e := range entries {
		if e.key != "" {
			out[e.key] = e.value
		}
	}
	return out
}

// setEnv replaces the last assignment of each key in set (dropping
// earlier duplicates) and appends new keys in sorted order.
func setEnv(entries []envEntry, set map[string]string) []envEntry {
	lastIdx := make(map[string]int)
	for i, e := range entries {
		if e.key != "" {
			lastIdx[e.key] = i
		}
	}
	out := make([]envEntry, 0, len(entries)+len(set))
	for i, e := range entries {
		v, ok := set[e.key]
		if e.key == "" || !ok {
			out = append(out, e)
			continue
		}
		if lastIdx[e.key] == i {
			out = append(out, envEntry{raw: formatEnvLine(e.key, v), key: e.key, value: v})
		}
	}
	if n := len(out); n > 0 && !strings.HasSuffix(out[n-1].raw, "\n") {
		out[n-1].raw += "\n"
	}
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range set {
			if !yield(k) {
				return
			}
		}
	}) {
		if _, ok := lastIdx[k]; !ok {
			out = append(out, envEntry{raw: formatEnvLine(k, set[k]), key: k, value: set[k]})
		}
	}
	return out
}

// formatEnvLine renders KEY=VALUE with the value quoted when it needs it:
// bare when it has only safe characters, 'single-quoted' when it has no
// single quote or line break, otherwise "double-quoted" with escapes.
func formatEnvLine(k, v string) string {
	switch {
	case envBareRE.MatchString(v):
		return k + "=" + v + "\n"
	case !strings.ContainsAny(v, "'\n\r"):
		return k + "='" + v + "'\n"
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\r", `\r`, `$`, `\$`)
	return k + `="` + r.Replace(v) + `"` + "\n"
}

// envList turns variables into KEY=VALUE strings in sorted key order.
func envList(vars map[string]string) []string {
	keys := make([]string, 0, len(vars))
	for k := range vars {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		out = append(out, fmt.Sprintf("%s=%s", k, vars[k]))
	}
	return out
}
