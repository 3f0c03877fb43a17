package ratelimit_test

import (
	"context"
	"errors"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/sandboxq/sandboxq/gateway"
	"github.com/sandboxq/sandboxq/gateway/local"
	"github.com/sandboxq/sandboxq/gateway/ratelimit"
	"github.com/sandboxq/sandboxq/handlers"
	"github.com/sandboxq/sandboxq/internal/redistest"
	tu "github.com/sandboxq/sandboxq/internal/testutil"
)

func TestMain(m *testing.M) { redistest.Main(m) }

func TestParse(t *testing.T) {
	t.Parallel()
	good := map[string]ratelimit.Limit{
		"":                      {},
		"off":                   {},
		"50/s":                  {Rate: 50, Per: time.Second, Burst: 1},
		"50/s,burst=10":         {Rate: 50, Per: time.Second, Burst: 10},
		" 600 / m , burst = 3 ": {Rate: 600, Per: time.Minute, Burst: 3},
		"1000/h":                {Rate: 1000, Per: time.Hour, Burst: 1},
	}
	for in, want := range good {
		got, err := ratelimit.Parse(in)
		if err != nil || got != want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"50", "x/s", "0/s", "-1/s", "50/d", "50/s,10", "50/s,burst=0", "50/s,rate=2", "50/s,burst=x"} {
		if _, err := ratelimit.Parse(in); err == nil {
			t.Errorf("Parse(%q) succeeded, want an error", in)
		}
	}
}

func newGate(t *testing.T, rdb redis.UniversalClient, opts ratelimit.Config) *ratelimit.Gate {
	t.Helper()
	g, err := ratelimit.New(rdb, opts)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// TestGatesShareOneBudget: two gates (two workers) on one Redis admit no
// more than rate+burst calls in any one-second window between them.
func TestGatesShareOneBudget(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t).Client(t)
	limit := ratelimit.Limit{Rate: 10, Per: time.Second, Burst: 3}
	reg := prometheus.NewRegistry()
	gates := []*ratelimit.Gate{
		newGate(t, rdb, ratelimit.Config{Limit: limit, MaxWait: 10 * time.Second, Metrics: reg}),
		newGate(t, rdb, ratelimit.Config{Limit: limit, MaxWait: 10 * time.Second}),
	}
	var mu sync.Mutex
	var admitted []time.Time
	var wg sync.WaitGroup
	for i := range 30 {
		wg.Go(func() {
			if err := gates[i%2].Wait(t.Context(), "find"); err != nil {
				t.Errorf("Wait: %v", err)
				return
			}
			mu.Lock()
			admitted = append(admitted, time.Now())
			mu.Unlock()
		})
	}
	wg.Wait()
	sort.Slice(admitted, func(i, j int) bool { return admitted[i].Before(admitted[j]) })
	if n := maxInWindow(admitted, time.Second); n > limit.Rate+limit.Burst {
		t.Fatalf("%d calls admitted within one second, want at most %d", n, limit.Rate+limit.Burst)
	}
	if n := testutil.CollectAndCount(reg, "sandboxq_gateway_rate_wait_seconds"); n == 0 {
		t.Fatal("no wait was measured")
	}
}

// maxInWindow is the largest number of times within any window of length w.
func maxInWindow(ts []time.Time, w time.Duration) int {
	best, j := 0, 0
	for i := range ts {
		for ts[i].Sub(ts[j]) >= w {
			j++
		}
		best = max(best, i-j+1)
	}
	return best
}

// TestGateRefusesPastMaxWait: a call that would wait longer than MaxWait is
// refused with a ThrottledError, which the handlers reschedule without
// counting a failure.
func TestGateRefusesPastMaxWait(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t).Client(t)
	g := newGate(t, rdb, ratelimit.Config{Limit: ratelimit.Limit{Rate: 1, Per: time.Hour, Burst: 1}, MaxWait: 20 * time.Millisecond})
	if err := g.Wait(t.Context(), "find"); err != nil {
		t.Fatalf("first call: %v", err)
	}
	err := g.Wait(t.Context(), "find")
	te, ok := errors.AsType[*gateway.ThrottledError](err)
	if !ok || !errors.Is(err, gateway.ErrThrottled) || te.RetryAfter < 30*time.Minute {
		t.Fatalf("second call: %v, want a ThrottledError naming a wait of about an hour", err)
	}
	if handlers.IsFailure(err) || handlers.Outcome(err) != handlers.OutcomeThrottled {
		t.Fatalf("IsFailure = %v, Outcome = %s; want false, throttled", handlers.IsFailure(err), handlers.Outcome(err))
	}
	p := handlers.DefaultPolicy()
	if d := p.RetryDelay(0, err, nil); d < p.MaxRetryAfter || d > p.MaxRetryAfter+p.BusyDelay {
		t.Fatalf("RetryDelay = %v, want the capped wait plus jitter", d)
	}
}

// TestPauseHoldsEveryGate: a pause set through one gate holds the calls of
// another until it ends; a shorter pause does not cut a longer one.
func TestPauseHoldsEveryGate(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t).Client(t)
	reg := prometheus.NewRegistry()
	a := newGate(t, rdb, ratelimit.Config{Metrics: reg})
	b := newGate(t, rdb, ratelimit.Config{MaxWait: 10 * time.Millisecond})
	a.Pause(t.Context(), 400*time.Millisecond)
	a.Pause(t.Context(), 50*time.Millisecond)
	if err := b.Wait(t.Context(), "find"); !errors.Is(err, gateway.ErrThrottled) {
		t.Fatalf("Wait during the pause = %v, want throttled", err)
	}
	patient := newGate(t, rdb, ratelimit.Config{MaxWait: 5 * time.Second})
	if err := patient.Wait(t.Context(), "find"); err != nil {
		t.Fatalf("Wait past the pause: %v", err)
	}
	if left, err := patient.PausedFor(t.Context()); err != nil || left != 0 {
		t.Fatalf("a call went out with %v of the pause left (%v)", left, err)
	}
	if n := counterValue(t, reg, "sandboxq_gateway_pauses_total"); n != 1 {
		t.Fatalf("pauses counted = %v, want 1 (the shorter one changed nothing)", n)
	}
}

func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no series %s", name)
	return 0
}

// TestGatewayClient429PausesEveryone: a gateway client with the gate sets
// the shared pause when the gateway answers 429 with a Retry-After, and
// the next call of any client waits for it.
func TestGatewayClient429PausesEveryone(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t).Client(t)
	g := newGate(t, rdb, ratelimit.Config{MaxWait: 10 * time.Millisecond})
	faults := local.Faults{Errors: []local.Fault{{Rate: 1, Status: 429, RetryAfter: 2 * time.Second, Scope: local.ScopeGateway}}}
	lp, gw := tu.Provider(t, local.Config{Faults: faults}, gateway.WithGate(g))
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := gw.Find(ctx, "default", "p"); gateway.RetryAfter(err) != 2*time.Second {
		t.Fatalf("Find = %v, want the injected 429", err)
	}
	left, err := g.PausedFor(ctx)
	if err != nil || left < time.Second {
		t.Fatalf("pause left = %v (%v), want about 2 s", left, err)
	}
	if err := lp.SetFaults(local.Faults{}); err != nil {
		t.Fatal(err)
	}
	other := newGate(t, rdb, ratelimit.Config{MaxWait: 10 * time.Millisecond})
	_, gw2 := tu.Provider(t, local.Config{}, gateway.WithGate(other))
	if _, err := gw2.Find(ctx, "default", "p"); !errors.Is(err, gateway.ErrThrottled) {
		t.Fatalf("another client's call during the pause = %v, want throttled", err)
	}
}
