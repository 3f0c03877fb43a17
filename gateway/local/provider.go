package local

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sandboxq/sandboxq/gateway/local/internal/proc"
	"github.com/sandboxq/sandboxq/internal/access"
	"github.com/sandboxq/sandboxq/internal/secret"
)

// Defaults for Config.
const (
	DefaultAddr        = "127.0.0.1:0"
	DefaultMaxOutput   = 1 << 20
	DefaultMaxFileSize = 10 << 20
	DefaultLogLimit    = 256 << 10
)

// Config configures a Provider. The zero value is usable.
type Config struct {
	// Addr is the listen address, default "127.0.0.1:0". A non-loopback
	// address is refused unless AllowNonLoopback is set.
	Addr             string
	AllowNonLoopback bool
	// Root is the directory sandboxes live in (Root/<sandboxId>). Default: a
	// new temporary directory, removed by Close. A caller-provided Root is
	// created if missing and left in place by Close.
	Root string
	// APIKey is the gateway key every gateway request must carry in
	// X-ComputeSDK-API-Key. Default: a random "local_<hex>".
	APIKey secret.Secret
	// Logger receives debug logs of requests and process events. Default:
	// discard.
	Logger *slog.Logger
	// MaxOutput caps stdout and stderr of /run/command, each. Default 1 MiB.
	MaxOutput int
	// MaxFileSize caps the size of one file written through the file API.
	// Default 10 MiB.
	MaxFileSize int64
	// LogLimit caps the retained logs of a managed server, per stream.
	// Default 256 KiB.
	LogLimit int
	// Path is the PATH of commands and servers (they inherit nothing else
	// from this process). Default: a standard system PATH
	// (/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin);
	// pass your own PATH to reach tools installed elsewhere.
	Path string
	// EventsAddr is the listen address of the events pub/sub (protocol
	// §4.2), default "127.0.0.1:0"; the same loopback rule as Addr applies.
	EventsAddr string
	// Faults injects errors, latency and dropped WebSockets; see Faults.
	Faults Faults
	// Observe, if set, is called after every request with what was done. It
	// is called from request goroutines and must be safe for concurrent use.
	Observe func(Observation)
}

// Observation describes one finished request.
type Observation struct {
	SandboxID string
	Namespace string
	Name      string
	Method    string
	// Path is the escaped request path without the query (which may carry
	// a token).
	Path   string
	Status int
	Start  time.Time
	End    time.Time
	// Mutating is true for requests other than GET, HEAD and OPTIONS.
	Mutating bool
	// Injected is true when the response was produced by fault injection.
	Injected bool
}

// SandboxView is a snapshot of one sandbox, for tests and tools.
type SandboxView struct {
	ID        string
	Namespace string
	Name      string
	URL       string
	Dir       string
	Token     secret.Secret
	CreatedAt time.Time
	// PIDs are the live processes of the sandbox's servers and running
	// commands.
	PIDs []int
}

// Provider is a running local provider: one HTTP server that is the gateway
// and, under /s/<sandboxId>, each sandbox's daemon.
type Provider struct {
	log         *slog.Logger
	maxOutput   int
	maxFileSize int64
	logLimit    int
	path        string
	observe     func(Observation)
	apiKey      secret.Secret
	root        string // symlink-free
	tempRoot    bool
	loopback    bool

	ln        net.Listener
	srv       *http.Server
	base      string
	serveDone chan struct{}

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc

	faults *faultState
	events *eventsHub
	// guard kills the process groups of commands and servers when this
	// process dies (nil if it could not start; Pdeathsig still applies).
	guard *proc.Guard

	// gate counts in-flight requests; closed refuses new ones.
	gateMu   sync.Mutex
	closed   bool
	inflight sync.WaitGroup

	// bg owns every background goroutine (websocket readers/writers, the
	// websocket dropper).
	bg sync.WaitGroup

	mu        sync.Mutex
	sandboxes map[string]*sandbox
	byName    map[nameKey]*sandbox

	closeOnce sync.Once
	closeErr  error
}

type nameKey struct{ namespace, name string }

// Start validates opts, listens and serves until Close.
func Start(opts Config) (*Provider, error) {
	addr := opts.Addr
	if addr == "" {
		addr = DefaultAddr
	}
	loopback, err := access.LoopbackAddr(addr)
	if err != nil {
		return nil, fmt.Errorf("local: bad Addr: %w", err)
	}
	if !loopback && !opts.AllowNonLoopback {
		return nil, fmt.Errorf("local: refusing to listen on non-loopback address %q: set AllowNonLoopback to expose sandboxes (they run arbitrary commands) beyond this host", addr)
	}
	if opts.MaxOutput < 0 || opts.MaxFileSize < 0 || opts.LogLimit < 0 {
		return nil, errors.New("local: MaxOutput, MaxFileSize and LogLimit must not be negative")
	}
	if err := opts.Faults.validate(); err != nil {
		return nil, err
	}
	p := &Provider{
		log:         opts.Logger,
		maxOutput:   opts.MaxOutput,
		maxFileSize: opts.MaxFileSize,
		logLimit:    opts.LogLimit,
		path:        opts.Path,
		observe:     opts.Observe,
		apiKey:      opts.APIKey,
		loopback:    loopback,
		serveDone:   make(chan struct{}),
		sandboxes:   make(map[string]*sandbox),
		byName:      make(map[nameKey]*sandbox),
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.maxOutput == 0 {
		p.maxOutput = DefaultMaxOutput
	}
	if p.maxFileSize == 0 {
		p.maxFileSize = DefaultMaxFileSize
	}
	if p.logLimit == 0 {
		p.logLimit = DefaultLogLimit
	}
	if p.path == "" {
		p.path = proc.DefaultPath
	}
	if p.apiKey.IsZero() {
		p.apiKey = secret.New("local_" + randHex(16))
	}
	root := opts.Root
	if root == "" {
		root, err = os.MkdirTemp("", "sandboxq-local-")
		if err != nil {
			return nil, fmt.Errorf("local: create root: %w", err)
		}
		p.tempRoot = true
	} else if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("local: create root: %w", err)
	}
	p.root, err = filepath.EvalSymlinks(root)
	if err == nil {
		p.root, err = filepath.Abs(p.root)
	}
	if err != nil {
		p.removeTempRoot()
		return nil, fmt.Errorf("local: root: %w", err)
	}

	evAddr := opts.EventsAddr
	if evAddr == "" {
		evAddr = DefaultAddr
	}
	evLoopback, err := access.LoopbackAddr(evAddr)
	if err != nil {
		p.removeTempRoot()
		return nil, fmt.Errorf("local: EventsAddr: %w", err)
	}
	if !evLoopback && !opts.AllowNonLoopback {
		p.removeTempRoot()
		return nil, fmt.Errorf("local: refusing to listen for events on non-loopback address %q: set AllowNonLoopback", evAddr)
	}
	evLn, err := net.Listen("tcp", evAddr)
	if err != nil {
		p.removeTempRoot()
		return nil, fmt.Errorf("local: listen for events: %w", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		_ = evLn.Close()
		p.removeTempRoot()
		return nil, fmt.Errorf("local: listen: %w", err)
	}
	p.ln = ln
	p.events = newEventsHub(p, evLn)
	p.base = "http://" + ln.Addr().String()
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.faults = newFaultState(opts.Faults)
	p.srv = &http.Server{
		Handler:           http.HandlerFunc(p.serveHTTP),
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return p.ctx },
		ErrorLog:          slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
	}
	go func() {
		defer close(p.serveDone)
		_ = p.srv.Serve(ln)
	}()
	p.bg.Go(p.dropLoop)
	p.bg.Go(p.events.acceptLoop)
	if p.guard, err = proc.StartGuard(); err != nil {
		p.log.Warn("sandbox processes may outlive a crash of this process", "err", err)
	}
	p.log.Info("local provider listening", slog.String("url", p.base), slog.String("root", p.root))
	return p, nil
}

// URL is the gateway base URL, e.g. http://127.0.0.1:PORT.
func (p *Provider) URL() string { return p.base }

// APIKey is the key gateway requests must carry.
func (p *Provider) APIKey() secret.Secret { return p.apiKey }

// Root is the directory that holds the sandboxes (symlinks resolved).
func (p *Provider) Root() string { return p.root }

// Sandbox returns a snapshot of the sandbox with the given id.
func (p *Provider) Sandbox(id string) (SandboxView, bool) {
	s := p.lookup(id)
	if s == nil {
		return SandboxView{}, false
	}
	return s.view(), true
}

// Sandboxes returns snapshots of every live sandbox, oldest first.
func (p *Provider) Sandboxes() []SandboxView {
	p.mu.Lock()
	all := make([]*sandbox, 0, len(p.sandboxes))
	for _, s := range p.sandboxes {
		all = append(all, s)
	}
	p.mu.Unlock()
	slices.SortFunc(all, func(a, b *sandbox) int {
		if c := a.created.Compare(b.created); c != 0 {
			return c
		}
		return strings.Compare(a.id, b.id)
	})
	out := make([]SandboxView, len(all))
	for i, s := range all {
		out[i] = s.view()
	}
	return out
}

func (p *Provider) lookup(id string) *sandbox {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sandboxes[id]
}

// Close stops every process (SIGTERM, then SIGKILL after the server's stop
// timeout), closes the listener and every WebSocket, waits for every
// goroutine the provider started and removes a temporary Root. It is safe
// to call more than once.
func (p *Provider) Close() error {
	p.closeOnce.Do(func() {
		p.gateMu.Lock()
		p.closed = true
		p.gateMu.Unlock()
		// Cancelling the base context aborts long requests (commands,
		// latency waits) so the in-flight wait below is short.
		p.cancel()
		p.inflight.Wait()

		p.mu.Lock()
		all := make([]*sandbox, 0, len(p.sandboxes))
		for _, s := range p.sandboxes {
			all = append(all, s)
		}
		clear(p.sandboxes)
		clear(p.byName)
		p.mu.Unlock()

		var errs []error
		var wg sync.WaitGroup
		var emu sync.Mutex
		for _, s := range all {
			wg.Go(func() {
				if err := s.destroy(false); err != nil {
					emu.Lock()
					errs = append(errs, err)
					emu.Unlock()
				}
			})
		}
		wg.Wait()
		if err := p.srv.Close(); err != nil {
			errs = append(errs, err)
		}
		<-p.serveDone
		p.events.close()
		p.bg.Wait()
		if err := p.guard.Close(); err != nil {
			errs = append(errs, fmt.Errorf("process-group guard: %w", err))
		}
		if p.tempRoot {
			if err := os.RemoveAll(p.root); err != nil {
				errs = append(errs, err)
			}
		}
		p.closeErr = errors.Join(errs...)
		p.log.Info("local provider closed")
	})
	return p.closeErr
}

func (p *Provider) removeTempRoot() {
	if p.tempRoot {
		_ = os.RemoveAll(p.root)
	}
}

// enter registers an in-flight request; it fails once Close has begun.
func (p *Provider) enter() bool {
	p.gateMu.Lock()
	defer p.gateMu.Unlock()
	if p.closed {
		return false
	}
	p.inflight.Add(1)
	return true
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand panics rather than return an error)
	return hex.EncodeToString(b)
}
