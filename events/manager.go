package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/sandboxq/sandboxq/gateway"
	"github.com/sandboxq/sandboxq/internal/backoff"
	"github.com/sandboxq/sandboxq/internal/config"
	"github.com/sandboxq/sandboxq/schema"
	"github.com/sandboxq/sandboxq/tasks"
)

// Defaults of Config.
const (
	DefaultCap           = 10000
	DefaultLeaseTTL      = 15 * time.Second
	DefaultClaimInterval = 5 * time.Second
	DefaultFastPoll      = time.Second
	DefaultSlowPoll      = 30 * time.Second
	DefaultReconcile     = 15 * time.Minute
	DefaultExpediteFor   = 2 * time.Minute
	DefaultSettleAfter   = 5 * time.Minute
	DefaultPingInterval  = 30 * time.Second
	DefaultReconnectMin  = 500 * time.Millisecond
	DefaultReconnectMax  = 30 * time.Second
	DefaultConcurrency   = 64
)

// Config configures a Manager. Redis, Gateway and OwnerID are required.
type Config struct {
	Redis   redis.UniversalClient
	Gateway *gateway.Client
	// Store is the registry and event store (default NewStore(Redis, {})).
	Store  *Store
	Logger *slog.Logger
	// OwnerID identifies this process in watcher leases; unique per process.
	OwnerID string
	// Cap is the most sandboxes this Manager watches (default 10000).
	Cap int
	// LeaseTTL is the watcher lease lifetime (default 15 s); leases are
	// renewed every LeaseTTL/3, so another process takes over a dead one's
	// sandboxes within LeaseTTL + ClaimInterval.
	LeaseTTL time.Duration
	// ClaimInterval is how often the registry index is scanned for
	// unowned live sandboxes (default 5 s).
	ClaimInterval time.Duration
	// FastPoll is the GET /servers period while a server is in transition
	// or someone waits on the sandbox (default 1 s). Otherwise signals of
	// the daemon WebSocket are the source: while it is subscribed, a poll
	// only every ReconcileInterval (default 15 min, ±50 % jitter) catches
	// what no signal announces; while it is not, every SlowPoll (default
	// 30 s, ±10 %).
	FastPoll, SlowPoll, ReconcileInterval time.Duration
	// ExpediteFor is how long Manager.Expedite keeps a sandbox on fast
	// polling (default 2 min).
	ExpediteFor time.Duration
	// SettleAfter bounds fast polling of a server that stays running
	// without becoming ready (a worker that opens no port): after this long
	// in running it is polled slowly (default 5 min).
	SettleAfter time.Duration
	// PingInterval is the keep-alive period of the daemon WebSocket and the
	// events connection (default 30 s; a WebSocket pings only when nothing
	// arrived for that long); a connection silent for 2×PingInterval is
	// dropped and redialled.
	PingInterval time.Duration
	// ReconnectMin and ReconnectMax bound the jittered exponential
	// reconnect backoff (defaults 500 ms and 30 s).
	ReconnectMin, ReconnectMax time.Duration
	// Concurrency bounds the gateway and daemon HTTP calls (find, signals,
	// polls, dials) in flight at once across all watchers (default 64).
	Concurrency int
	// EventsAddr is the host:port of the events service pub/sub
	// (protocol §4.2); "" disables that source.
	EventsAddr string
	// EventsToken returns the access token to subscribe to a sandbox's
	// events with (default: the sandbox's daemon token). The token is kept
	// in memory only.
	EventsToken func(sb *gateway.Sandbox) string
	// OnEvent is called for every event this Manager appended. It must not
	// block.
	OnEvent func(tasks.Event)
	// OnLeaseLost is called when a watcher lease was lost (expired and
	// possibly taken by another process) rather than released.
	OnLeaseLost func()
}

// withDefaults checks the required fields, fills the zero values with
// their documented defaults, then validates the result.
func (c *Config) withDefaults() error {
	var missing []string
	if c.Redis == nil {
		missing = append(missing, "Redis")
	}
	if c.Gateway == nil {
		missing = append(missing, "Gateway")
	}
	if strings.TrimSpace(c.OwnerID) == "" {
		missing = append(missing, "OwnerID")
	}
	if len(missing) > 0 {
		return fmt.Errorf("events: Config needs %s", strings.Join(missing, ", "))
	}
	config.FillDefaults(c.durations())
	if c.ReconnectMax >= 0 && c.ReconnectMax < c.ReconnectMin {
		c.ReconnectMax = c.ReconnectMin
	}
	if c.Cap == 0 {
		c.Cap = DefaultCap
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.Store == nil {
		c.Store = NewStore(c.Redis, StoreConfig{})
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.EventsToken == nil {
		c.EventsToken = func(sb *gateway.Sandbox) string { return sb.Token }
	}
	return c.validate()
}

func (c *Config) durations() []config.Duration {
	return []config.Duration{
		config.Field("LeaseTTL", &c.LeaseTTL, DefaultLeaseTTL),
		config.Field("ClaimInterval", &c.ClaimInterval, DefaultClaimInterval),
		config.Field("FastPoll", &c.FastPoll, DefaultFastPoll),
		config.Field("SlowPoll", &c.SlowPoll, DefaultSlowPoll),
		config.Field("ReconcileInterval", &c.ReconcileInterval, DefaultReconcile),
		config.Field("ExpediteFor", &c.ExpediteFor, DefaultExpediteFor),
		config.Field("SettleAfter", &c.SettleAfter, DefaultSettleAfter),
		config.Field("PingInterval", &c.PingInterval, DefaultPingInterval),
		config.Field("ReconnectMin", &c.ReconnectMin, DefaultReconnectMin),
		config.Field("ReconnectMax", &c.ReconnectMax, DefaultReconnectMax),
	}
}

// validate reports the first field that is out of range, naming it.
func (c *Config) validate() error {
	if d, bad := config.Negative(c.durations()); bad {
		return fmt.Errorf("events: Config.%s must not be negative", d.Name)
	}
	if c.Cap < 0 || c.Concurrency < 0 {
		return errors.New("events: Config.Cap and Concurrency must not be negative")
	}
	if c.LeaseTTL < 30*time.Millisecond {
		return fmt.Errorf("events: Config.LeaseTTL %v is below 30ms", c.LeaseTTL)
	}
	return nil
}

// Manager runs the watchers of the sandboxes this process owns: it claims
// unowned live sandboxes of the registry up to Cap, keeps their leases
// alive in batches, and stops a watcher when its sandbox is destroyed or
// its lease is lost.
type Manager struct {
	cfg   Config
	log   *slog.Logger
	store *Store
	rdb   redis.UniversalClient
	sem   chan struct{}

	mu       sync.Mutex
	runCtx   context.Context // nil until Run, and after it returned
	watchers map[string]*watcher
	held     atomic.Int64
	live     atomic.Int64   // live Managers, from the last heartbeat
	total    atomic.Int64   // registry entries, from the last heartbeat
	bg       sync.WaitGroup // nudge claims and watcher self-stops

	// abandon makes Run's shutdown leave leases in place, as a killed
	// process would (tests).
	abandon atomic.Bool
	// hooks observe the watchers (tests); set before Run.
	hooks hooks
}

type hooks struct {
	connected func(member, source string) // source "ws" or "events"
	line      func(member string)
	signal    func(member string)
}

// NewManager checks cfg and returns a Manager; Run starts it.
func NewManager(cfg Config) (*Manager, error) {
	if err := cfg.withDefaults(); err != nil {
		return nil, err
	}
	return &Manager{
		cfg:      cfg,
		log:      cfg.Logger.With("component", "events"),
		store:    cfg.Store,
		rdb:      cfg.Redis,
		sem:      make(chan struct{}, cfg.Concurrency),
		watchers: map[string]*watcher{},
	}, nil
}

// Store returns the Manager's store.
func (m *Manager) Store() *Store { return m.store }

// Held returns the number of sandboxes this Manager watches.
func (m *Manager) Held() int { return int(m.held.Load()) }

// Watching reports whether this Manager watches p.
func (m *Manager) Watching(p tasks.Project) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.watchers[schema.IndexMember(p)] != nil
}

// Run claims and watches sandboxes until ctx is done, then stops every
// watcher and releases its leases. It returns nil after ctx is done, or
// an error if it was already running.
func (m *Manager) Run(ctx context.Context) error {
	m.mu.Lock()
	if m.runCtx != nil {
		m.mu.Unlock()
		return errors.New("events: Manager is already running")
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	m.runCtx = runCtx
	m.mu.Unlock()

	var wg sync.WaitGroup
	wg.Go(func() { m.claimLoop(runCtx) })
	wg.Go(func() { m.renewLoop(runCtx) })
	wg.Go(func() { m.nudgeLoop(runCtx) })
	<-runCtx.Done()
	wg.Wait()

	m.mu.Lock()
	m.runCtx = nil
	all := make([]*watcher, 0, len(m.watchers))
	for _, w := range m.watchers {
		all = append(all, w)
	}
	m.mu.Unlock()
	for _, w := range all {
		w.end()
	}
	for _, w := range all {
		<-w.done
	}
	m.bg.Wait()
	if !m.abandon.Load() {
		m.releaseAll(all)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = m.rdb.ZRem(ctx, schema.WatcherManagersKey, m.cfg.OwnerID).Err()
		cancel()
	}
	m.mu.Lock()
	clear(m.watchers)
	m.held.Store(0)
	m.mu.Unlock()
	return nil
}

// releaseAll releases the leases of stopped watchers, bounded in time
// because the caller's context is already done.
func (m *Manager) releaseAll(all []*watcher) {
	if len(all) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i := 0; i < len(all); i += 500 {
		batch := all[i:min(i+500, len(all))]
		ops := make([]schema.LeaseOp, len(batch))
		for j, w := range batch {
			ops[j] = watcherLease(w.p)
		}
		err := schema.ReleaseLeases(ctx, m.rdb, ops, m.cfg.OwnerID)
		if err != nil {
			m.log.Warn("release watcher leases", "err", err, "count", len(batch))
		}
	}
}

// watcherLease is p's watcher lease with the registry entry that records
// its owner.
func watcherLease(p tasks.Project) schema.LeaseOp {
	return schema.LeaseOp{Key: schema.WatcherKey(p), Registry: schema.RegistryKey(p)}
}

// Claim makes this Manager watch p at once if nobody else does and it has
// room; if another process watches p, nothing changes. A Manager that is
// not running (or is full) nudges the others instead. p must have a
// registry entry (Store.Upsert first): ErrNotFound otherwise.
func (m *Manager) Claim(ctx context.Context, p tasks.Project) error {
	p, err := checkProject(p)
	if err != nil {
		return err
	}
	e, err := m.store.Get(ctx, p)
	if err != nil {
		return err
	}
	if e.Status == tasks.SandboxDestroyed {
		return nil
	}
	member := schema.IndexMember(p)
	m.mu.Lock()
	runCtx := m.runCtx
	w := m.watchers[member]
	full := len(m.watchers) >= m.cfg.Cap
	m.mu.Unlock()
	if w != nil {
		w.resync()
		return nil
	}
	if runCtx == nil || full {
		return m.rdb.Publish(ctx, schema.WatchersChannel, "claim "+member).Err()
	}
	ok, err := m.tryClaim(ctx, p)
	if err != nil {
		return err
	}
	if ok {
		m.start(runCtx, p)
	}
	return nil
}

func (m *Manager) tryClaim(ctx context.Context, p tasks.Project) (bool, error) {
	ok, err := schema.AcquireLease(ctx, m.rdb, schema.WatcherKey(p), schema.RegistryKey(p), m.cfg.OwnerID, m.cfg.LeaseTTL)
	if err != nil {
		return false, fmt.Errorf("events: claim %s/%s: %w", p.Namespace, p.Name, err)
	}
	return ok, nil
}

// start runs a watcher for p, whose lease this Manager holds. A watcher
// already running for p is kept.
func (m *Manager) start(runCtx context.Context, p tasks.Project) {
	member := schema.IndexMember(p)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.watchers[member] != nil {
		return
	}
	if m.runCtx != runCtx || runCtx.Err() != nil {
		// Run is ending: give the lease back rather than let it expire.
		m.bg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, _ = schema.ReleaseLease(ctx, m.rdb, schema.WatcherKey(p), schema.RegistryKey(p), m.cfg.OwnerID)
		})
		return
	}
	w := newWatcher(m, runCtx, p)
	m.watchers[member] = w
	m.held.Add(1)
	w.resync() // its first step opens a session and polls
}

// stop ends p's watcher; release says whether to give up its lease (a lost
// lease is not ours to release).
func (m *Manager) stop(p tasks.Project, release bool) {
	member := schema.IndexMember(p)
	m.mu.Lock()
	w := m.watchers[member]
	if w != nil {
		delete(m.watchers, member)
		m.held.Add(-1)
	}
	m.mu.Unlock()
	if w == nil {
		return
	}
	w.end()
	<-w.done
	if release {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := schema.ReleaseLease(ctx, m.rdb, schema.WatcherKey(p), schema.RegistryKey(p), m.cfg.OwnerID); err != nil {
			m.log.Warn("release watcher lease", "project", member, "err", err)
		}
	}
}

// stopAsync is stop from a watcher's own goroutine, which stop waits for.
func (m *Manager) stopAsync(p tasks.Project, release bool) {
	m.bg.Go(func() { m.stop(p, release) })
}

func (m *Manager) lookup(member string) *watcher {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.watchers[member]
}

// claimLoop scans the registry index for unowned live sandboxes every
// ClaimInterval. The first scan waits one (jittered) interval after the
// first heartbeat, so Managers started together see each other and share.
func (m *Manager) claimLoop(ctx context.Context) {
	m.heartbeat(ctx)
	seen := map[string]bool{}
	t := time.NewTimer(jitter(m.cfg.ClaimInterval, 0.5))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		next, err := m.scan(ctx, seen)
		if err != nil && ctx.Err() == nil {
			m.log.Warn("claim scan", "err", err)
		}
		if err == nil {
			seen = next
		}
		t.Reset(jitter(m.cfg.ClaimInterval, 0.1))
	}
}

// heartbeat records this Manager as live until now+LeaseTTL and notes
// the number of live Managers and of registry entries.
func (m *Manager) heartbeat(ctx context.Context) {
	now := time.Now()
	var live, total *redis.IntCmd
	_, err := m.rdb.Pipelined(ctx, func(pl redis.Pipeliner) error {
		pl.ZAdd(ctx, schema.WatcherManagersKey, redis.Z{Score: float64(now.Add(m.cfg.LeaseTTL).UnixMilli()), Member: m.cfg.OwnerID})
		pl.ZRemRangeByScore(ctx, schema.WatcherManagersKey, "-inf", fmt.Sprint(now.UnixMilli()))
		live = pl.ZCard(ctx, schema.WatcherManagersKey)
		total = pl.ZCard(ctx, schema.RegistryIndexKey)
		return nil
	})
	if err != nil {
		if ctx.Err() == nil {
			m.log.Warn("watcher manager heartbeat", "err", err)
		}
		return
	}
	m.live.Store(max(live.Val(), 1))
	m.total.Store(total.Val())
}

// share is the number of sandboxes this Manager claims without delay:
// its fair part of the registry plus one.
func (m *Manager) share() int {
	live, total := m.live.Load(), m.total.Load()
	if live < 1 {
		live = 1
	}
	return int((total+live-1)/live) + 1
}

// scan walks the index in pages and claims unowned live sandboxes: up to
// the fair share at once, beyond it (up to Cap) only those already seen
// unowned by the previous scan, so a Manager with room left takes over
// what the others leave. It returns the members seen unowned.
func (m *Manager) scan(ctx context.Context, seenFree map[string]bool) (map[string]bool, error) {
	const page = 500
	m.heartbeat(ctx)
	free := map[string]bool{}
	var cursor uint64
	for {
		keys, next, err := m.rdb.ZScan(ctx, schema.RegistryIndexKey, cursor, "", page).Result()
		if err != nil {
			return nil, err
		}
		var cands []tasks.Project
		for i := 0; i+1 < len(keys); i += 2 {
			if m.lookup(keys[i]) != nil {
				continue
			}
			p, err := ProjectOfMember(keys[i])
			if err != nil {
				continue
			}
			cands = append(cands, p)
		}
		if len(cands) > 0 {
			if err := m.claimSome(ctx, cands, free, seenFree); err != nil {
				return nil, err
			}
		}
		if next == 0 {
			return free, nil
		}
		cursor = next
	}
}

func (m *Manager) claimSome(ctx context.Context, cands []tasks.Project, free, seenFree map[string]bool) error {
	owners := make([]*redis.StringCmd, len(cands))
	statuses := make([]*redis.StringCmd, len(cands))
	_, err := m.rdb.Pipelined(ctx, func(pl redis.Pipeliner) error {
		for i, p := range cands {
			owners[i] = pl.Get(ctx, schema.WatcherKey(p))
			statuses[i] = pl.HGet(ctx, schema.RegistryKey(p), FieldStatus)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return err
	}
	var now, later []tasks.Project
	for i, p := range cands {
		st := statuses[i].Val()
		if owners[i].Val() != "" || st == "" || st == tasks.SandboxDestroyed {
			continue
		}
		member := schema.IndexMember(p)
		free[member] = true
		if seenFree[member] {
			now = append(now, p)
		} else {
			later = append(later, p)
		}
	}
	// Shuffle, so Managers scanning together spread the work.
	shuffle := func(ps []tasks.Project) {
		rand.Shuffle(len(ps), func(i, j int) { ps[i], ps[j] = ps[j], ps[i] })
	}
	shuffle(now)
	shuffle(later)
	m.mu.Lock()
	held := len(m.watchers)
	m.mu.Unlock()
	room := m.cfg.Cap - held
	fair := max(m.share()-held, 0)
	// Long-unowned ones first (anyone with room takes them), then new ones
	// within the fair share.
	take := now[:min(len(now), room)]
	room -= len(take)
	take = append(take, later[:min(len(later), room, fair)]...)
	if len(take) == 0 {
		return nil
	}
	ops := make([]schema.LeaseOp, len(take))
	for i, p := range take {
		ops[i] = watcherLease(p)
	}
	claimed, err := schema.AcquireLeases(ctx, m.rdb, ops, m.cfg.OwnerID, m.cfg.LeaseTTL)
	if err != nil {
		return err
	}
	for i, p := range take {
		if claimed[i] {
			m.start(ctx, p)
		}
	}
	return nil
}

// renewLoop renews every held lease each LeaseTTL/3 in pipelined batches.
// A lease found gone or owned by someone else stops its watcher (lost);
// when renewals fail for longer than LeaseTTL every watcher is stopped,
// since other processes may have taken the sandboxes over.
func (m *Manager) renewLoop(ctx context.Context) {
	interval := m.cfg.LeaseTTL / 3
	t := time.NewTicker(interval)
	defer t.Stop()
	lastOK := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		m.heartbeat(ctx)
		m.mu.Lock()
		all := make([]tasks.Project, 0, len(m.watchers))
		for _, w := range m.watchers {
			all = append(all, w.p)
		}
		m.mu.Unlock()
		lost, err := m.renew(ctx, all)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			m.log.Warn("renew watcher leases", "err", err)
			if time.Since(lastOK) >= m.cfg.LeaseTTL {
				lost = all
			}
		} else {
			lastOK = time.Now()
		}
		for _, p := range lost {
			m.log.Info("watcher lease lost", "project", schema.IndexMember(p))
			if m.cfg.OnLeaseLost != nil {
				m.cfg.OnLeaseLost()
			}
			m.stop(p, false)
		}
	}
}

func (m *Manager) renew(ctx context.Context, all []tasks.Project) ([]tasks.Project, error) {
	var lost []tasks.Project
	for i := 0; i < len(all); i += 500 {
		batch := all[i:min(i+500, len(all))]
		keys := make([]string, len(batch))
		for j, p := range batch {
			keys[j] = schema.WatcherKey(p)
		}
		rctx, cancel := context.WithTimeout(ctx, m.cfg.LeaseTTL/3)
		held, err := schema.RenewLeases(rctx, m.rdb, keys, m.cfg.OwnerID, m.cfg.LeaseTTL)
		cancel()
		if err != nil {
			return nil, err
		}
		for j, p := range batch {
			if !held[j] {
				lost = append(lost, p)
			}
		}
	}
	return lost, nil
}

// nudgeLoop listens to every project's events (a destroyed sandbox stops
// its watcher; others' observations inform its polling) and to the
// watchers channel (claim and expedite nudges). Messages are hints: what
// they trigger checks Redis first, since pub/sub is shared by every
// database of a server.
func (m *Manager) nudgeLoop(ctx context.Context) {
	attempt := 0
	for ctx.Err() == nil {
		ps := m.rdb.Subscribe(ctx, schema.WatchersChannel, schema.AllEventsChannel)
		if _, err := ps.Receive(ctx); err != nil {
			_ = ps.Close()
			if ctx.Err() != nil {
				return
			}
			m.log.Warn("subscribe to watcher nudges", "err", err)
			if backoff.Sleep(ctx, m.backoff(attempt)) != nil {
				return
			}
			attempt++
			continue
		}
		attempt = 0
		ch := ps.Channel(redis.WithChannelSize(1024))
	recv:
		for {
			select {
			case <-ctx.Done():
				break recv
			case msg, ok := <-ch:
				if !ok {
					break recv
				}
				m.handleNudge(ctx, msg)
			}
		}
		_ = ps.Close()
	}
}

func (m *Manager) handleNudge(ctx context.Context, msg *redis.Message) {
	if msg.Channel == schema.WatchersChannel {
		verb, member, ok := strings.Cut(msg.Payload, " ")
		if !ok {
			return
		}
		switch verb {
		case "expedite":
			if w := m.lookup(member); w != nil {
				w.expedite()
			}
		case "claim":
			p, err := ProjectOfMember(member)
			if err != nil || m.lookup(member) != nil {
				return
			}
			m.bg.Go(func() {
				if err := m.Claim(ctx, p); err != nil && ctx.Err() == nil && !errors.Is(err, ErrNotFound) {
					m.log.Warn("claim on nudge", "project", member, "err", err)
				}
			})
		}
		return
	}
	var ev tasks.Event
	if err := jsonUnmarshal(msg.Payload, &ev); err != nil {
		return
	}
	if w := m.lookup(schema.IndexMember(ev.Project())); w != nil {
		w.external(ev)
	}
}

func (m *Manager) backoff(attempt int) time.Duration {
	return backoffDelay(m.cfg.ReconnectMin, m.cfg.ReconnectMax, attempt)
}

// emitted reports an event this Manager appended.
func (m *Manager) emitted(ev *tasks.Event) {
	if ev != nil && m.cfg.OnEvent != nil {
		m.cfg.OnEvent(*ev)
	}
}

// acquire takes a slot of the network concurrency bound.
func (m *Manager) acquire(ctx context.Context) bool {
	select {
	case m.sem <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

func (m *Manager) releaseSlot() { <-m.sem }

// Expedite puts p's watcher (in whichever process) on fast polling for
// Config.ExpediteFor; see the package function Expedite.
func (m *Manager) Expedite(ctx context.Context, p tasks.Project) error {
	return Expedite(ctx, m.rdb, p, m.cfg.ExpediteFor)
}

// Expedite tells p's watcher, in whichever process runs it, that someone
// waits on p's servers: it polls at once and then fast for d. It sets
// schema.WaitingKey(p) with TTL d (read by a watcher that claims p later)
// and publishes "expedite <member>" on schema.WatchersChannel.
func Expedite(ctx context.Context, rdb redis.UniversalClient, p tasks.Project, d time.Duration) error {
	p, err := checkProject(p)
	if err != nil {
		return err
	}
	if d <= 0 {
		d = DefaultExpediteFor
	}
	if err := rdb.Set(ctx, schema.WaitingKey(p), "1", d).Err(); err != nil {
		return fmt.Errorf("events: expedite %s/%s: %w", p.Namespace, p.Name, err)
	}
	if err := rdb.Publish(ctx, schema.WatchersChannel, "expedite "+schema.IndexMember(p)).Err(); err != nil {
		return fmt.Errorf("events: expedite %s/%s: %w", p.Namespace, p.Name, err)
	}
	return nil
}
