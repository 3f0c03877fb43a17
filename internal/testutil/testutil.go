// Package testutil holds small helpers shared by sandboxq's tests: a
// goroutine-safe buffer for output a test reads while a program writes it,
// and a poll-with-deadline for state outside the test's control (a task's
// state in Redis, a process table). Tests wait on signals where there is
// one; Eventually is for the rest.
package testutil

import (
	"bytes"
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
func Provider(tb testing.TB, opts local.Options, gwOpts ...gateway.Option) (*local.Provider, *gateway.Client) {
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
