package local

import (
	"net/http"
	"testing"
)

// TestFaultScopeReads: a "reads" rule fails GETs of the gateway and the
// daemon and the gateway's find and find-or-create, and nothing that
// mutates.
func TestFaultScopeReads(t *testing.T) {
	t.Parallel()
	p := startProvider(t, Config{})
	s := newSandbox(t, p, nil)
	if err := p.SetFaults(Faults{Errors: []Fault{{Rate: 1, Scope: ScopeReads}}}); err != nil {
		t.Fatal(err)
	}
	key := map[string]string{"namespace": "default", "name": "reads"}
	for _, c := range []struct {
		name string
		r    resp
	}{
		{"daemon GET /servers", s.do(http.MethodGet, "/servers", nil)},
		{"daemon GET /files", s.do(http.MethodGet, "/files", nil)},
		{"gateway GET sandbox", gw(t, p, http.MethodGet, "/v1/sandboxes/"+s.rec.SandboxID, nil)},
		{"gateway find", gw(t, p, http.MethodPost, "/v1/sandbox/find", key)},
		{"gateway find-or-create", gw(t, p, http.MethodPost, "/v1/sandbox/find-or-create", key)},
	} {
		if c.r.status != http.StatusServiceUnavailable {
			t.Errorf("%s: %d, want the injected 503", c.name, c.r.status)
		}
	}
	s.must(http.StatusOK, http.MethodGet, "/health", nil) // exempt as ever
	s.must(http.StatusOK, http.MethodPost, "/files/batch", map[string]any{"files": []map[string]string{{"path": "a.txt", "operation": "write", "content": "x"}}})
	if r := gw(t, p, http.MethodPost, "/v1/sandbox/"+s.rec.SandboxID+"/extend", map[string]int{"duration": 1000}); r.status == http.StatusServiceUnavailable {
		t.Errorf("extend (a mutation) got the read fault: %s", r.body)
	}
}
