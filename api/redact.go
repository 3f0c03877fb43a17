package api

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"

	"github.com/sandboxq/sandboxq/internal/secret"
	"github.com/sandboxq/sandboxq/tasks"
)

// Task results never hold env values, file contents or credentials (the
// handlers write names, counts and sizes). The API does not rely on it: it
// redacts every result it returns the way the dashboard does.
//
//   - "env", "envs", "set" or "variables" holding an object of strings
//     becomes the sorted list of its names;
//   - "content" holding a string becomes "content_bytes": its size;
//   - any value under a credential-like key (secret.IsCredentialName:
//     token, api_key, x-api-key, password, secret, auth, …) becomes
//     "[redacted]", at every depth (metadata included).
//
// A result without any of these comes back byte for byte.

var envKeys = map[string]bool{"env": true, "envs": true, "set": true, "variables": true}

const redactedValue = "[redacted]"

// redactResult returns a copy of res whose Result is redacted.
func redactResult(res *tasks.Result) *tasks.Result {
	out := *res
	out.Result = redactJSON(res.Result)
	return &out
}

// redactJSON redacts raw; raw that is not JSON is returned unchanged.
func redactJSON(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 {
		return raw
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return raw
	}
	v, changed := redactValue(v)
	if !changed {
		return raw
	}
	b, err := json.Marshal(v)
	if err != nil {
		return raw
	}
	return b
}

func redactValue(v any) (any, bool) {
	switch x := v.(type) {
	case map[string]any:
		changed := false
		for k, val := range x {
			lk := strings.ToLower(k)
			if secret.IsCredentialName(k) {
				if val != nil && val != "" && val != redactedValue {
					x[k] = redactedValue
					changed = true
				}
				continue
			}
			switch s := val.(type) {
			case string:
				if lk == "content" {
					delete(x, k)
					x["content_bytes"] = len(s)
					changed = true
					continue
				}
			case map[string]any:
				if envKeys[lk] && allStrings(s) {
					names := make([]string, 0, len(s))
					for name := range s {
						names = append(names, name)
					}
					slices.Sort(names)
					x[k] = names
					changed = true
					continue
				}
			}
			if nv, c := redactValue(val); c {
				x[k] = nv
				changed = true
			}
		}
		return x, changed
	case []any:
		changed := false
		for i, val := range x {
			if nv, c := redactValue(val); c {
				x[i] = nv
				changed = true
			}
		}
		return x, changed
	}
	return v, false
}

func allStrings(m map[string]any) bool {
	for _, v := range m {
		if _, ok := v.(string); !ok {
			return false
		}
	}
	return true
}
