package local

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Fault scopes.
const (
	ScopeAll     = ""
	ScopeGateway = "gateway"
	ScopeDaemon  = "daemon"
	// ScopeReads is every idempotent read: GET and HEAD requests to the
	// gateway or a daemon, and the gateway's find and find-or-create
	// POSTs (idempotent by namespace and name).
	ScopeReads = "reads"
)

// Fault is one error-injection rule.
type Fault struct {
	// Rate is the probability in [0, 1] that a request in scope fails.
	Rate float64
	// Status is the injected HTTP status, default 503.
	Status int
	// RetryAfter, if set, is sent as a Retry-After header (whole seconds,
	// rounded up). Injected 429s always carry one, default 1 s.
	RetryAfter time.Duration
	// Scope is "" (every request), "gateway" (/v1/...), "daemon"
	// (/s/<id>/...) or "reads" (idempotent reads anywhere, ScopeReads).
	Scope string
}

// Faults configures fault injection. Rules are tried in order and the first
// one that fires answers the request.
type Faults struct {
	Errors []Fault
	// Latency is added to every request before it is handled.
	Latency time.Duration
	// DropWebSocketsEvery, if positive, closes every WebSocket abruptly (no
	// close frame) at this period.
	DropWebSocketsEvery time.Duration
	// Seed seeds the random source of Errors; equal seeds give equal
	// sequences of decisions for equal sequences of requests.
	Seed int64
}

func (f Faults) validate() error {
	for i, e := range f.Errors {
		if e.Rate < 0 || e.Rate > 1 {
			return fmt.Errorf("local: Faults.Errors[%d].Rate %v is outside [0, 1]", i, e.Rate)
		}
		if e.Status != 0 && (e.Status < 400 || e.Status > 599) {
			return fmt.Errorf("local: Faults.Errors[%d].Status %d is not an HTTP error status", i, e.Status)
		}
		if e.RetryAfter < 0 {
			return fmt.Errorf("local: Faults.Errors[%d].RetryAfter is negative", i)
		}
		switch e.Scope {
		case ScopeAll, ScopeGateway, ScopeDaemon, ScopeReads:
		default:
			return fmt.Errorf("local: Faults.Errors[%d].Scope %q is not \"\", \"gateway\", \"daemon\" or \"reads\"", i, e.Scope)
		}
	}
	if f.Latency < 0 || f.DropWebSocketsEvery < 0 {
		return errors.New("local: Faults.Latency and DropWebSocketsEvery must not be negative")
	}
	return nil
}

type faultState struct {
	mu      sync.Mutex
	f       Faults
	rng     *rand.Rand
	changed chan struct{} // signalled on every SetFaults
}

func newFaultState(f Faults) *faultState {
	return &faultState{
		f:       f,
		rng:     rand.New(rand.NewPCG(uint64(f.Seed), uint64(f.Seed)^0x9e3779b97f4a7c15)),
		changed: make(chan struct{}, 1),
	}
}

// SetFaults replaces the fault configuration; it is safe while requests
// are being served. The random source is reseeded from f.Seed. An invalid
// configuration (rate outside [0,1], non-error status, unknown scope) is
// rejected and the previous one kept.
func (p *Provider) SetFaults(f Faults) error {
	if err := f.validate(); err != nil {
		return err
	}
	fs := p.faults
	fs.mu.Lock()
	fs.f = f
	fs.rng = rand.New(rand.NewPCG(uint64(f.Seed), uint64(f.Seed)^0x9e3779b97f4a7c15))
	fs.mu.Unlock()
	select {
	case fs.changed <- struct{}{}:
	default:
	}
	return nil
}

func (fs *faultState) snapshot() Faults {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.f
}

// pick decides whether a request in scope (gateway or daemon) fails, and
// with which rule.
func (fs *faultState) pick(scope, method, path string) (Fault, bool) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for _, e := range fs.f.Errors {
		switch e.Scope {
		case ScopeAll, scope:
		case ScopeReads:
			if !idempotentRead(scope, method, path) {
				continue
			}
		default:
			continue
		}
		if e.Rate > 0 && fs.rng.Float64() < e.Rate {
			return e, true
		}
	}
	return Fault{}, false
}

// idempotentRead reports whether a request is in ScopeReads.
func idempotentRead(scope, method, path string) bool {
	if method == http.MethodGet || method == http.MethodHead {
		return true
	}
	return scope == ScopeGateway && method == http.MethodPost &&
		(strings.HasSuffix(path, "/find") || strings.HasSuffix(path, "/find-or-create"))
}

// writeFault answers a request with an injected error.
func writeFault(w http.ResponseWriter, scope string, f Fault) {
	status := f.Status
	if status == 0 {
		status = http.StatusServiceUnavailable
	}
	ra := f.RetryAfter
	if ra == 0 && status == http.StatusTooManyRequests {
		ra = time.Second
	}
	if ra > 0 {
		secs := int64((ra + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", fmt.Sprint(secs))
	}
	msg := fmt.Sprintf("injected fault: %d %s", status, http.StatusText(status))
	if scope == ScopeGateway {
		writeGatewayError(w, status, msg)
		return
	}
	writeDaemonError(w, status, msg)
}

// dropLoop closes every WebSocket abruptly every DropWebSocketsEvery. It
// re-reads the period whenever SetFaults is called and exits on Close.
func (p *Provider) dropLoop() {
	var tick <-chan time.Time
	var ticker *time.Ticker
	reset := func() {
		if ticker != nil {
			ticker.Stop()
			ticker, tick = nil, nil
		}
		if d := p.faults.snapshot().DropWebSocketsEvery; d > 0 {
			ticker = time.NewTicker(d)
			tick = ticker.C
		}
	}
	reset()
	defer func() {
		if ticker != nil {
			ticker.Stop()
		}
	}()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-p.faults.changed:
			reset()
		case <-tick:
			p.dropWebSockets()
		}
	}
}

func (p *Provider) dropWebSockets() {
	p.mu.Lock()
	all := make([]*sandbox, 0, len(p.sandboxes))
	for _, s := range p.sandboxes {
		all = append(all, s)
	}
	p.mu.Unlock()
	n := 0
	for _, s := range all {
		for _, c := range s.connList() {
			c.drop()
			n++
		}
	}
	if n > 0 {
		p.log.Debug("injected fault: dropped websockets", "count", n)
	}
}
