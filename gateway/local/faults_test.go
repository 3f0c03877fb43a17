package local

import (
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// observer records observations.
type observer struct {
	mu  sync.Mutex
	obs []Observation
}

func (o *observer) record(ob Observation) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.obs = append(o.obs, ob)
}

func (o *observer) all() []Observation {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.obs)
}

func TestFaultErrors(t *testing.T) {
	t.Parallel()
	var o observer
	p := startProvider(t, Config{Observe: o.record})
	s := newSandbox(t, p, nil)
	if err := p.SetFaults(Faults{Errors: []Fault{{Rate: 1, Status: 429, RetryAfter: 1500 * time.Millisecond, Scope: ScopeGateway}}}); err != nil {
		t.Fatal(err)
	}
	r := gw(t, p, http.MethodPost, "/v1/sandboxes/find", map[string]any{"name": "x"})
	if r.status != 429 || r.header.Get("Retry-After") != "2" {
		t.Errorf("injected: %d Retry-After %q", r.status, r.header.Get("Retry-After"))
	}
	if m := r.object(t); m["success"] != false || !strings.Contains(m["error"].(string), "injected") {
		t.Errorf("body %s", r.body)
	}
	// Daemon requests are out of this rule's scope.
	s.must(http.StatusOK, http.MethodGet, "/files", nil)

	// Scope daemon, default status, /health exempt; 429 without
	// RetryAfter still says when to retry.
	if err := p.SetFaults(Faults{Errors: []Fault{{Rate: 1, Scope: ScopeDaemon}}}); err != nil {
		t.Fatal(err)
	}
	r = s.do(http.MethodGet, "/files", nil)
	if r.status != http.StatusServiceUnavailable || !strings.Contains(r.errorText(t), "injected") || r.header.Get("Retry-After") != "" {
		t.Errorf("daemon fault: %d %s", r.status, r.body)
	}
	s.must(http.StatusOK, http.MethodGet, "/health", nil)
	if r := gw(t, p, http.MethodGet, "/v1/sandboxes/"+s.rec.SandboxID, nil); r.status != http.StatusOK {
		t.Errorf("gateway affected by a daemon rule: %d", r.status)
	}
	if err := p.SetFaults(Faults{Errors: []Fault{{Rate: 1, Status: 429}}}); err != nil {
		t.Fatal(err)
	}
	if r := gw(t, p, http.MethodGet, "/v1/sandboxes/"+s.rec.SandboxID, nil); r.status != 429 || r.header.Get("Retry-After") != "1" {
		t.Errorf("default Retry-After: %d %q", r.status, r.header.Get("Retry-After"))
	}
	if err := p.SetFaults(Faults{}); err != nil {
		t.Fatal(err)
	}
	s.must(http.StatusOK, http.MethodGet, "/files", nil)

	injected := 0
	for _, ob := range o.all() {
		if ob.Injected {
			injected++
			if ob.Status != 429 && ob.Status != 503 {
				t.Errorf("injected observation with status %d", ob.Status)
			}
		}
	}
	if injected != 3 {
		t.Errorf("%d injected observations, want 3", injected)
	}
}

func TestFaultSeedIsDeterministic(t *testing.T) {
	t.Parallel()
	p := startProvider(t, Config{Faults: Faults{Errors: []Fault{{Rate: 0.5}}, Seed: 42}})
	run := func() []int {
		var out []int
		for range 40 {
			out = append(out, gw(t, p, http.MethodPost, "/v1/sandboxes/find", map[string]any{"name": "x"}).status)
		}
		return out
	}
	first := run()
	if err := p.SetFaults(Faults{Errors: []Fault{{Rate: 0.5}}, Seed: 42}); err != nil {
		t.Fatal(err)
	}
	second := run()
	if !slices.Equal(first, second) {
		t.Errorf("same seed, different decisions:\n%v\n%v", first, second)
	}
	fails := 0
	for _, st := range first {
		if st == 503 {
			fails++
		}
	}
	if fails == 0 || fails == len(first) {
		t.Errorf("rate 0.5 failed %d of %d", fails, len(first))
	}
}

func TestFaultLatency(t *testing.T) {
	t.Parallel()
	p := startProvider(t, Config{Faults: Faults{Latency: 150 * time.Millisecond}})
	start := time.Now()
	gw(t, p, http.MethodPost, "/v1/sandboxes/find", map[string]any{"name": "x"})
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("request took %v, less than the injected latency", d)
	}
}

func TestFaultValidation(t *testing.T) {
	t.Parallel()
	bad := []Faults{
		{Errors: []Fault{{Rate: 1.5}}},
		{Errors: []Fault{{Rate: -0.1}}},
		{Errors: []Fault{{Rate: 1, Status: 200}}},
		{Errors: []Fault{{Rate: 1, Scope: "everywhere"}}},
		{Errors: []Fault{{Rate: 1, RetryAfter: -time.Second}}},
		{Latency: -time.Second},
	}
	p := startProvider(t, Config{})
	for _, f := range bad {
		if _, err := Start(Config{Faults: f}); err == nil {
			t.Errorf("Start accepted %+v", f)
		}
		if err := p.SetFaults(f); err == nil {
			t.Errorf("SetFaults accepted %+v", f)
		}
	}
}

// TestObserve checks that observations name the sandbox, the method and
// the path without its query.
func TestObserve(t *testing.T) {
	t.Parallel()
	var o observer
	p := startProvider(t, Config{Observe: o.record})
	s := newSandbox(t, p, map[string]any{"namespace": "ns", "name": "proj"})
	s.must(http.StatusCreated, http.MethodPost, "/files", map[string]any{"path": "a", "content": "b"})
	do(t, http.MethodGet, s.rec.URL+"/files?token="+s.rec.Token, nil, nil)
	var daemonWrites, reads int
	for _, ob := range o.all() {
		if ob.SandboxID != s.rec.SandboxID || ob.Namespace != "ns" || ob.Name != "proj" {
			t.Errorf("observation without the sandbox: %+v", ob)
		}
		if strings.Contains(ob.Path, s.rec.Token) || strings.Contains(ob.Path, "?") {
			t.Errorf("path carries the query: %q", ob.Path)
		}
		if ob.End.Before(ob.Start) {
			t.Errorf("end before start: %+v", ob)
		}
		switch {
		case ob.Method == "POST" && strings.HasSuffix(ob.Path, "/files"):
			daemonWrites++
			if !ob.Mutating || ob.Status != 201 {
				t.Errorf("write: %+v", ob)
			}
		case ob.Method == "GET":
			reads++
			if ob.Mutating {
				t.Errorf("read marked mutating: %+v", ob)
			}
		}
	}
	if daemonWrites != 1 || reads != 1 {
		t.Errorf("observed %d writes, %d reads: %+v", daemonWrites, reads, o.all())
	}
}
