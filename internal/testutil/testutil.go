// Package testutil holds small helpers shared by sandboxq's tests: a
// goroutine-safe buffer for output a test reads while a program writes it,
// and a poll-with-deadline for state outside the test's control (a task's
// state in Redis, a process table). Tests wait on signals where there is
// one; Eventually is for the rest. It also starts the real peers tests
// share: a local provider with a client (Provider), an asynq server
// (StartAsynq), and finds headless Chromium (Chromium).
package testutil

import (
	"bytes"
	"crypto/rand"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sandboxq/sandboxq/gateway"
	"github.com/sandboxq/sandboxq/gateway/local"
)

// SyncBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write implements io.Writer.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Eventually polls cond every 20 ms until it holds, and fails the test if
// it does not within timeout.
func Eventually(tb testing.TB, what string, timeout time.Duration, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Provider starts a local provider for the test (closed when it ends) and
// returns it with a gateway client authenticated to it. gwOpts are added to
// the client's options.
func Provider(tb testing.TB, opts local.Config, gwOpts ...gateway.Option) (*local.Provider, *gateway.Client) {
	tb.Helper()
	lp, err := local.Start(opts)
	if err != nil {
		tb.Fatalf("start local provider: %v", err)
	}
	tb.Cleanup(func() {
		if err := lp.Close(); err != nil {
			tb.Errorf("close local provider: %v", err)
		}
	})
	gw, err := gateway.NewClient(lp.URL(), append([]gateway.Option{gateway.WithAPIKey(lp.APIKey())}, gwOpts...)...)
	if err != nil {
		tb.Fatalf("gateway client: %v", err)
	}
	return lp, gw
}

// Recorder collects what a local provider observed (use Add as
// local.Config.Observe); safe for concurrent use.
type Recorder struct {
	mu  sync.Mutex
	obs []local.Observation
}

// Add records one observation.
func (r *Recorder) Add(o local.Observation) {
	r.mu.Lock()
	r.obs = append(r.obs, o)
	r.mu.Unlock()
}

// Snapshot returns a copy of everything recorded so far.
func (r *Recorder) Snapshot() []local.Observation {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]local.Observation(nil), r.obs...)
}

// ProjectMutation reports whether the provider saw a request that changes a
// sandbox's files, env, commands or servers: what a task does under the
// project lease. Gateway lookups and a watcher's signal subscription are not.
func ProjectMutation(o local.Observation) bool {
	return o.Mutating && o.SandboxID != "" && strings.HasPrefix(o.Path, "/s/") && !strings.Contains(o.Path, "/signals/")
}

// NoOverlappingMutations fails the test if two project mutations of one
// sandbox overlapped in time, and returns how many mutations each sandbox
// saw.
func NoOverlappingMutations(tb testing.TB, obs []local.Observation) map[string]int {
	tb.Helper()
	bySandbox := map[string][]local.Observation{}
	for _, o := range obs {
		if ProjectMutation(o) {
			bySandbox[o.SandboxID] = append(bySandbox[o.SandboxID], o)
		}
	}
	counts := make(map[string]int, len(bySandbox))
	for id, list := range bySandbox {
		sort.Slice(list, func(i, j int) bool { return list[i].Start.Before(list[j].Start) })
		for i := 1; i < len(list); i++ {
			if list[i].Start.Before(list[i-1].End) {
				tb.Fatalf("sandbox %s: %s %s started at %v before %s %s ended at %v", id,
					list[i].Method, list[i].Path, list[i].Start, list[i-1].Method, list[i-1].Path, list[i-1].End)
			}
		}
		counts[id] = len(list)
	}
	return counts
}

// RandomBytes returns n random bytes (certainly not UTF-8 text for a large
// n), failing the test if the system's random source does.
func RandomBytes(tb testing.TB, n int) []byte {
	tb.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		tb.Fatal(err)
	}
	return b
}
