package events

import (
	"testing"

	"github.com/sandboxq/sandboxq"
	"github.com/sandboxq/sandboxq/tasks"
)

// FuzzParseEventLine: no line from the events service makes the parser
// panic, and what it accepts is a known status of this sandbox.
func FuzzParseEventLine(f *testing.F) {
	for _, seed := range []string{
		`{"id":"1","sandboxId":"sbx_1","workspaceId":1,"type":"server.status_changed","data":{"serverName":"web","status":"ready","url":"http://x"},"timestamp":1764136800123}`,
		`{"sandboxId":"sbx_1","type":"sandbox.status_changed","data":{"status":"destroyed"},"timestamp":1}`,
		`{"sandboxId":"sbx_2","type":"server.status_changed","data":{"serverName":"web","status":"ready"}}`,
		`{"type":"server.status_changed","data":{"serverName":"web","status":"bogus"}}`,
		`{"type":"custom","data":null}`, `+OK`, `*3`, `{`, `{"data":[1,2]}`, "",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		ev, ok := parseEventLine(line, "sbx_1")
		if !ok {
			return
		}
		switch {
		case ev.server != nil:
			if ev.server.slug == "" || !sandboxq.ServerStatus(ev.server.st.Status).Known() {
				t.Fatalf("accepted %q as server %q status %q", line, ev.server.slug, ev.server.st.Status)
			}
		case ev.sandbox != nil:
			switch ev.sandbox.status {
			case tasks.SandboxReady, tasks.SandboxDestroyed, tasks.SandboxError:
			default:
				t.Fatalf("accepted %q as sandbox status %q", line, ev.sandbox.status)
			}
		default:
			t.Fatalf("accepted %q with nothing in it", line)
		}
	})
}
