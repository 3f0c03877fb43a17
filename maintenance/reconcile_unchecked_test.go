package maintenance_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/sandboxq/sandboxq/gateway"
	"github.com/sandboxq/sandboxq/maintenance"
	"github.com/sandboxq/sandboxq/tasks"
)

// flakyGateway is a reverse proxy in front of the local provider that
// answers 503 to every find of the project named bad while broken is set,
// and, while denied is set, 401 to every find.
type flakyGateway struct {
	srv            *httptest.Server
	bad            string
	broken, denied atomic.Bool
	refused        atomic.Int32
}

func newFlakyGateway(t *testing.T, b *testBundle, bad string) (*flakyGateway, *gateway.Client) {
	t.Helper()
	target, err := url.Parse(b.lp.URL())
	if err != nil {
		t.Fatal(err)
	}
	f := &flakyGateway{bad: bad}
	proxy := httputil.NewSingleHostReverseProxy(target)
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		find := r.Method == http.MethodPost && bytes.HasSuffix([]byte(r.URL.Path), []byte("/find"))
		switch {
		case find && f.denied.Load():
			f.refused.Add(1)
			http.Error(w, `{"success":false,"error":"invalid API key"}`, http.StatusUnauthorized)
			return
		case find && f.broken.Load() && bytes.Contains(body, []byte(`"name":"`+f.bad+`"`)):
			f.refused.Add(1)
			http.Error(w, `{"success":false,"error":"upstream unavailable"}`, http.StatusServiceUnavailable)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(f.srv.Close)
	gw, err := gateway.NewClient(f.srv.URL, gateway.WithAPIKey(b.lp.APIKey()), gateway.WithReadRetry(2, time.Millisecond, 100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	return f, gw
}

// TestReconcileCountsUncheckedAndSucceeds: of 50 registry entries, one
// cannot be checked (its find keeps answering 503). The run still
// succeeds on its first attempt, counts 1 unchecked, and does not touch
// that entry; the next run checks it. A permanent answer (401) archives
// the run at once.
func TestReconcileCountsUncheckedAndSucceeds(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	fg, gw := newFlakyGateway(t, b, "p-17")
	mux := asynq.NewServeMux()
	if err := maintenance.Register(mux, maintenance.Config{Redis: b.rdb, Gateway: gw, Logger: b.logger}); err != nil {
		t.Fatal(err)
	}
	b.startServer(t, mux)
	// 50 entries registered ready whose sandboxes the gateway does not
	// have: a checked one is marked destroyed.
	for i := range 50 {
		if err := b.store.Upsert(ctx, proj(fmt.Sprintf("p-%d", i)), fmt.Sprintf("sbx-%d", i), "local"); err != nil {
			t.Fatal(err)
		}
	}
	fg.broken.Store(true)
	var res maintenance.ReconcileResult
	e, err := b.client.Enqueue(ctx, tasks.MaintenanceReconcile{}, asynq.MaxRetry(0))
	b.mustSucceed(t, e, err, &res)
	t.Logf("first run: checked %d, unchecked %d, marked destroyed %d, failures %+v", res.Checked, res.Unchecked, res.MarkedDestroyed, res.Failures)
	if res.Checked != 50 || res.Unchecked != 1 || res.MarkedDestroyed != 49 || len(res.Failures) != 1 || res.Failures[0].Name != "p-17" {
		t.Fatalf("first run = %+v, want 50 checked, 1 unchecked (p-17), 49 marked destroyed", res)
	}
	if n := fg.refused.Load(); n != 3 {
		t.Errorf("the unchecked entry's find was refused %d times, want 3 (two in-call retries)", n)
	}
	if got := b.entry(t, proj("p-17")).Status; got != tasks.SandboxReady {
		t.Fatalf("unchecked entry status = %q, want it left ready", got)
	}

	// Next slot: the gateway answers again and the entry is checked.
	fg.broken.Store(false)
	res = maintenance.ReconcileResult{}
	e, err = b.client.Enqueue(ctx, tasks.MaintenanceReconcile{}, asynq.MaxRetry(0))
	b.mustSucceed(t, e, err, &res)
	if res.Unchecked != 0 || res.MarkedDestroyed != 1 {
		t.Fatalf("second run = %+v, want the unchecked entry marked destroyed", res)
	}
	if got := b.entry(t, proj("p-17")).Status; got != tasks.SandboxDestroyed {
		t.Fatalf("p-17 status after the second run = %q, want destroyed", got)
	}

	// A permanent answer archives the run on its first attempt even with
	// retries left.
	fg.denied.Store(true)
	e, err = b.client.Enqueue(ctx, tasks.MaintenanceReconcile{}, asynq.MaxRetry(5))
	tf := b.mustFail(t, e, err)
	if !containsAll(tf.LastErr, "reconcile", "401") {
		t.Fatalf("error = %q, want it to name the run and the 401", tf.LastErr)
	}
	if st, _ := b.client.Status(ctx, e.Queue, e.ID); st == nil || st.Retried != 0 {
		t.Fatalf("status %+v, want archived without a retry", st)
	}
}
