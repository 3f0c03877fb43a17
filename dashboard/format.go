package dashboard

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/sandboxq/sandboxq/internal/secret"
	"github.com/sandboxq/sandboxq/tasks"
)

// redactedValue replaces a credential.
const redactedValue = "[redacted]"

// FormatPayload renders a task payload for display: decompressed (gzip is
// recognised by its magic bytes, since Asynqmon passes no headers),
// redacted (see Redact) and pretty-printed JSON. A payload that is not JSON
// is shown only as its size, because nothing can be said about what it
// holds.
func FormatPayload(taskType string, payload []byte) string {
	if len(payload) == 0 {
		return ""
	}
	raw, err := tasks.Uncompress(payload, nil)
	if err != nil {
		return fmt.Sprintf("[%d bytes that cannot be decompressed]", len(payload))
	}
	return formatJSON(taskType, raw)
}

// FormatResult renders a task result the same way as FormatPayload.
// sandboxq's results never hold secrets (DESIGN.md §3); they go through the
// same redaction anyway, because embedders register task types of their
// own.
func FormatResult(taskType string, result []byte) string {
	if len(result) == 0 {
		return ""
	}
	raw, err := tasks.Uncompress(result, nil)
	if err != nil {
		return fmt.Sprintf("[%d bytes that cannot be decompressed]", len(result))
	}
	return formatJSON(taskType, raw)
}

func formatJSON(taskType string, raw []byte) string {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil || dec.More() {
		return fmt.Sprintf("[%d bytes, not JSON]", len(raw))
	}
	v = Redact(taskType, v)
	out, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Sprintf("[%d bytes that cannot be shown]", len(raw))
	}
	return string(out)
}

// Redact returns v, a decoded JSON document (objects as map[string]any,
// arrays as []any) of a task of type taskType, with everything secret
// replaced. It works on the JSON tree rather than on the payload structs,
// so unknown fields and payloads that fail validation (the ones an operator
// most wants to read) are shown too, and every depth is covered:
//
//   - env values → names: the value of a key named "env", "envs" or
//     "environment" that is an object becomes the sorted list of its keys;
//     so does "set" of an env:update payload, including env:update steps of
//     a workflow.
//   - file contents → sizes: a string under a key named "content" or
//     "contents" becomes "[N bytes]".
//   - credentials: the value of any key that secret.IsCredentialName
//     calls a credential ("token", "password", "secret", "api_key",
//     "x-api-key", "auth", …) becomes "[redacted]".
//
// Everything else is kept, including sandbox:ensure's metadata (it is sent
// to the gateway as plain data and holds no credentials by contract; a
// credential-named key inside it is still redacted) and commands (put
// secrets in env, not on the command line).
func Redact(taskType string, v any) any {
	return redact(v, taskType == tasks.TypeEnvUpdate)
}

// redact walks v. envSet says that v is an env:update payload, whose "set"
// holds env values.
func redact(v any, envSet bool) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, val := range x {
			out[k] = redactField(x, k, val, envSet)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, val := range x {
			out[i] = redact(val, false)
		}
		return out
	}
	return v
}

func redactField(parent map[string]any, key string, val any, envSet bool) any {
	lk := strings.ToLower(key)
	if secret.IsCredentialName(key) {
		if val == nil {
			return nil
		}
		return redactedValue
	}
	switch lk {
	case "env", "envs", "environment":
		if m, ok := val.(map[string]any); ok {
			return keysOf(m)
		}
	case "set":
		if m, ok := val.(map[string]any); ok && envSet {
			return keysOf(m)
		}
	case "content", "contents":
		if s, ok := val.(string); ok {
			return fmt.Sprintf("[%d bytes]", len(s))
		}
	case "payload":
		// A workflow step: {"type": "env:update", "payload": {...}}.
		if t, ok := parent["type"].(string); ok && t == tasks.TypeEnvUpdate {
			return redact(val, true)
		}
	}
	return redact(val, false)
}

func keysOf(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
