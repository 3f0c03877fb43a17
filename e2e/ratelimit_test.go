package e2e

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/sandboxq/sandboxq/internal/redistest"
	"github.com/sandboxq/sandboxq/tasks"
)

// gatewayCounter sits between the workers and the local provider's gateway:
// it records when each gateway request arrives and answers one chosen
// request with 429 Retry-After: 2 instead of passing it on.
type gatewayCounter struct {
	proxy   *httputil.ReverseProxy
	mu      sync.Mutex
	arrived []time.Time
	// After this many requests, the next one gets the 429.
	rejectAfter int
	rejectedAt  time.Time
}

func (g *gatewayCounter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.URL.Path, "/v1/") {
		g.proxy.ServeHTTP(w, r) // a daemon request: not the gateway's budget
		return
	}
	g.mu.Lock()
	g.arrived = append(g.arrived, time.Now())
	reject := len(g.arrived) == g.rejectAfter+1
	g.mu.Unlock()
	if reject {
		w.Header().Set("Retry-After", "2")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = w.Write([]byte(`{"error":"rate limited"}`))
		g.mu.Lock()
		g.rejectedAt = time.Now()
		g.mu.Unlock()
		return
	}
	g.proxy.ServeHTTP(w, r)
}

func (g *gatewayCounter) snapshot() ([]time.Time, time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := append([]time.Time(nil), g.arrived...)
	sort.Slice(out, func(i, j int) bool { return out[i].Before(out[j]) })
	return out, g.rejectedAt
}

// TestGatewayRateSharedByWorkerProcesses: 3 worker processes with
// SANDBOXQ_GATEWAY_RATE=20/s (burst 1) run 300 tasks that each call the
// gateway. In no second does the gateway get more than 20+1 requests; after
// one 429 with Retry-After: 2 no worker sends a gateway request for those
// 2 s; every task completes and none is archived.
func TestGatewayRateSharedByWorkerProcesses(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	lp, env := provider(t, db, nil)
	target, err := url.Parse(lp.URL())
	if err != nil {
		t.Fatal(err)
	}
	counter := &gatewayCounter{
		proxy:       &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(target) }},
		rejectAfter: 100,
	}
	front := httptest.NewServer(counter)
	t.Cleanup(front.Close)
	env["COMPUTESDK_GATEWAY_URL"] = front.URL
	env["SANDBOXQ_GATEWAY_RATE"] = "20/s"
	env["SANDBOXQ_WATCHERS_DISABLED"] = "true"
	for range 3 {
		startWorker(t, env)
	}

	rdb := db.Client(t)
	client := tasks.NewClient(rdb)
	ctx := t.Context()
	var all []*tasks.Enqueued
	for i := range 300 {
		var e *tasks.Enqueued
		var err error
		if i%2 == 0 {
			e, err = client.EnsureSandbox(ctx, tasks.SandboxEnsure{Project: tasks.Project{Name: fmt.Sprintf("burst%d", i)}})
		} else {
			e, err = client.DestroySandbox(ctx, tasks.SandboxDestroy{Project: tasks.Project{Name: fmt.Sprintf("gone%d", i)}})
		}
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, e)
	}
	waitAll(t, client, all)

	arrived, rejectedAt := counter.snapshot()
	if len(arrived) < 300 || rejectedAt.IsZero() {
		t.Fatalf("%d gateway requests, 429 sent: %v; want at least 300 and the 429", len(arrived), !rejectedAt.IsZero())
	}
	checkPerSecond(t, arrived, 20+1)
	checkPaused(t, arrived, rejectedAt)
	insp := asynq.NewInspectorFromRedisClient(rdb)
	queues, err := insp.Queues()
	if err != nil || len(queues) == 0 {
		t.Fatalf("queues = %v, %v", queues, err)
	}
	for _, name := range queues {
		q, err := insp.GetQueueInfo(name)
		if err != nil {
			t.Fatal(err)
		}
		if q.Archived != 0 {
			t.Fatalf("queue %s: %d tasks archived, want none", name, q.Archived)
		}
	}
}

// arrivalJitter bounds how much later than its grant at the gate a request
// may reach the gateway (scheduling on a busy machine, the proxy hop).
const arrivalJitter = 200 * time.Millisecond

// checkPerSecond checks the shared budget at the gateway. The gate grants
// at most limit requests in any one-second window, but arrivals are seen
// after a varying delay, which can move a grant into the next wall-clock
// second. So the check counts arrivals in every sliding window of 1 s less
// arrivalJitter: all of them were granted within one second, so a window
// holding more than limit means the budget was overrun. The per-second
// figure is logged too.
func checkPerSecond(t *testing.T, arrived []time.Time, limit int) {
	t.Helper()
	perSecond := map[int64]int{}
	busiest := 0
	for _, a := range arrived {
		s := a.Unix()
		perSecond[s]++
		busiest = max(busiest, perSecond[s])
	}
	sorted := slices.SortedFunc(slices.Values(arrived), time.Time.Compare)
	window, most, first := time.Second-arrivalJitter, 0, 0
	for i, a := range sorted {
		for a.Sub(sorted[first]) >= window {
			first++
		}
		most = max(most, i-first+1)
	}
	t.Logf("%d gateway requests over %d seconds; busiest wall-clock second: %d; busiest %v window: %d",
		len(arrived), len(perSecond), busiest, window, most)
	if most > limit {
		t.Fatalf("%d gateway requests within %v, want at most %d", most, window, limit)
	}
}

// checkPaused wants no arrival while the 429's pause lasted. A request
// that passed the gate just before the pause was recorded may still arrive
// just after the 429: the first 250 ms are left out for it.
func checkPaused(t *testing.T, arrived []time.Time, rejectedAt time.Time) {
	t.Helper()
	from, to := rejectedAt.Add(250*time.Millisecond), rejectedAt.Add(2*time.Second)
	var during []time.Duration
	grace := 0
	for _, a := range arrived {
		switch {
		case a.After(rejectedAt) && !a.After(from):
			grace++
		case a.After(from) && a.Before(to):
			during = append(during, a.Sub(rejectedAt))
		}
	}
	t.Logf("gateway requests in the first 250 ms after the 429 (already past the gate): %d", grace)
	if len(during) > 0 {
		t.Fatalf("%d gateway requests during the 2 s pause, at %v after the 429", len(during), during)
	}
}
