package events

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/sandboxq/sandboxq"
	"github.com/sandboxq/sandboxq/gateway"
	"github.com/sandboxq/sandboxq/internal/backoff"
	"github.com/sandboxq/sandboxq/schema"
	"github.com/sandboxq/sandboxq/tasks"
)

// watcher follows one sandbox for its Manager. It has no goroutine of its
// own while idle: a wake-up (a signal, an events line, a nudge, its poll
// timer, a refusal, its end) starts one step goroutine, which polls and
// writes to the store until nothing is left to do. The reader goroutines
// of the current session only hand it signals and observations.
type watcher struct {
	m      *Manager
	p      tasks.Project
	member string
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	mu         sync.Mutex
	servers    map[string]serverSeen // last known status per slug
	fastUntil  time.Time
	lines      []lineEvent // from the events service, not yet applied
	needCheck  bool        // re-read the registry entry before the next poll
	needWait   bool        // re-read the waiting key before the next poll
	lastSignal time.Time   // arrival of the newest daemon signal (metrics)
	wsUp       bool        // the daemon WebSocket is subscribed to signals

	// Scheduling, under mu.
	pollDue   bool        // poll at the next step
	refindDue bool        // the daemon refused us: find the sandbox again
	running   bool        // a step goroutine runs
	timer     *time.Timer // the next timed poll (nil before the first)
	due       time.Time   // when timer fires

	// Owned by the step goroutine.
	sess      *session
	failures  int // polls failed in a row
	refinds   int // sessions ended by a refusal since the last good poll
	lastCheck time.Time
}

type serverSeen struct {
	status string
	since  time.Time
}

// lineEvent is one event of the events service.
type lineEvent struct {
	server  *observation
	sandbox *sandboxObservation
}

type observation struct {
	slug     string
	st       ServerState
	fromLine bool
}

type sandboxObservation struct{ status, err string }

func newWatcher(m *Manager, parent context.Context, p tasks.Project) *watcher {
	ctx, cancel := context.WithCancel(parent)
	w := &watcher{
		m: m, p: p, member: schema.IndexMember(p), ctx: ctx, cancel: cancel,
		done:    make(chan struct{}),
		pollDue: true,
	}
	return w
}

// end stops the watcher; its done closes once the session is closed.
func (w *watcher) end() {
	w.cancel()
	w.resync() // the step it starts ends the watcher
}

// resync makes the watcher poll at once (after a claim or a reconnect).
func (w *watcher) resync() {
	w.mu.Lock()
	w.pollDue = true
	w.scheduleLocked()
	w.mu.Unlock()
}

// askRefind makes the watcher find the sandbox at the gateway again.
func (w *watcher) askRefind() {
	w.mu.Lock()
	w.refindDue = true
	w.scheduleLocked()
	w.mu.Unlock()
}

// scheduleLocked starts a step goroutine unless one runs; the running one
// sees what was asked before it returns.
func (w *watcher) scheduleLocked() {
	if w.running {
		return
	}
	select {
	case <-w.done:
		return
	default:
	}
	w.running = true
	go w.step()
}

// expedite is a nudge that someone waits: re-read the waiting key, poll.
func (w *watcher) expedite() {
	w.mu.Lock()
	w.needWait = true
	w.pollDue = true
	w.scheduleLocked()
	w.mu.Unlock()
}

// signal records a daemon signal and polls at once.
func (w *watcher) signal() {
	w.mu.Lock()
	w.lastSignal = time.Now()
	w.pollDue = true
	w.scheduleLocked()
	w.mu.Unlock()
}

// external takes in an event appended by anyone (pub/sub): it keeps the
// polling pace informed and makes a destroyed sandbox checked at once.
func (w *watcher) external(ev tasks.Event) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch ev.Type {
	case tasks.EventServerStatusChanged:
		w.noteLocked(ev.ServerName, ev.Status, time.Now())
	case tasks.EventSandboxStatusChanged:
		if ev.Status == tasks.SandboxDestroyed || ev.Status == tasks.SandboxCreated {
			w.needCheck = true
			w.pollDue = true
			w.scheduleLocked()
		}
	}
}

func (w *watcher) noteLocked(slug, status string, now time.Time) {
	if slug == "" {
		return
	}
	if cur, ok := w.servers[slug]; ok && cur.status == status {
		return
	}
	if w.servers == nil {
		w.servers = map[string]serverSeen{}
	}
	w.servers[slug] = serverSeen{status: status, since: now}
}

func (w *watcher) addLine(le lineEvent) {
	w.mu.Lock()
	w.lines = append(w.lines, le)
	w.pollDue = true
	w.scheduleLocked()
	w.mu.Unlock()
}

// setWS records whether the daemon WebSocket is subscribed. While it is,
// signals are the source and polls are rare (ReconcileInterval); when it
// goes down, the next poll comes within SlowPoll.
func (w *watcher) setWS(up bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.wsUp = up
	if !up && w.timer != nil && time.Until(w.due) > w.m.cfg.SlowPoll {
		w.armLocked(jitter(w.m.cfg.SlowPoll, 0.1))
	}
}

// armLocked sets the timed poll d from now.
func (w *watcher) armLocked(d time.Duration) {
	w.due = time.Now().Add(d)
	if w.timer == nil {
		w.timer = time.AfterFunc(d, w.resync)
		return
	}
	w.timer.Reset(d)
}

// step is the watcher's goroutine while it has work: it runs rounds until
// nothing is due, and ends the watcher once its context is done.
func (w *watcher) step() {
	for {
		w.mu.Lock()
		if w.ctx.Err() != nil {
			if w.timer != nil {
				w.timer.Stop()
			}
			w.mu.Unlock()
			if w.sess != nil {
				w.sess.stop()
				w.sess = nil
			}
			close(w.done) // under running: no step starts after this
			return
		}
		refind, poll := w.refindDue, w.pollDue
		w.refindDue, w.pollDue = false, false
		if !refind && !poll && w.sess != nil {
			w.running = false
			w.mu.Unlock()
			return
		}
		w.mu.Unlock()
		if !w.round(refind) {
			w.cancel() // the next turn ends the watcher
		}
	}
}

// round is one turn of work: a new session if needed, the registry and
// waiting checks that are due, a poll, and the next timed poll. It returns
// false when the watcher should end.
func (w *watcher) round(refind bool) bool {
	if refind && w.sess != nil {
		w.sess.stop()
		w.sess = nil
		w.refinds++
	}
	if w.sess == nil {
		if w.sess = w.openSession(w.refinds); w.sess == nil {
			return false
		}
		w.lastCheck = time.Now()
	}
	check, wait := w.takeNeeds(w.lastCheck)
	if check {
		w.lastCheck = time.Now()
		switch w.checkEntry(w.sess.sandboxID) {
		case entryGone:
			return false
		case entryReplaced:
			w.sess.stop()
			w.sess = nil
			w.resync()
			return true
		}
	}
	if wait {
		w.readWaiting()
	}
	ok, stop := w.poll(w.sess)
	if stop {
		return false
	}
	var next time.Duration
	if ok {
		w.failures, w.refinds = 0, 0
		next = w.interval(time.Now())
	} else {
		next = min(backoffDelay(w.m.cfg.FastPoll, w.m.cfg.SlowPoll, w.failures), w.m.cfg.SlowPoll)
		w.failures++
	}
	w.mu.Lock()
	w.armLocked(next)
	w.mu.Unlock()
	return true
}

// openSession resolves the sandbox and starts a session on it, after a
// backoff when earlier sessions ended by a refusal. It returns nil when
// the watcher should end. The round that opened it polls next, which
// resyncs.
func (w *watcher) openSession(refinds int) *session {
	if refinds > 0 && backoff.Sleep(w.ctx, backoffDelay(w.m.cfg.ReconnectMin, w.m.cfg.ReconnectMax, refinds-1)) != nil {
		return nil
	}
	sb, id := w.resolve()
	if sb == nil {
		return nil
	}
	w.mu.Lock()
	w.refindDue = false // a refusal seen by the session just ended is stale
	w.needWait = true
	w.mu.Unlock()
	return w.startSession(sb, id)
}

// takeNeeds reports, and clears, whether the registry entry must be
// re-checked (asked for, or not checked for SlowPoll since lastCheck) and
// whether the waiting key must be read.
func (w *watcher) takeNeeds(lastCheck time.Time) (check, wait bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	check, wait = w.needCheck || time.Since(lastCheck) >= w.m.cfg.SlowPoll, w.needWait
	w.needCheck, w.needWait = false, false
	return check, wait
}

// resolve reads the registry entry and finds the sandbox at the gateway,
// retrying transient failures. It returns nil when the watcher should end
// (entry gone, sandbox destroyed or missing, ctx done).
func (w *watcher) resolve() (*gateway.Sandbox, string) {
	log := w.m.log.With("project", w.member)
	for attempt := 0; ; attempt++ {
		if attempt > 0 && backoff.Sleep(w.ctx, backoffDelay(w.m.cfg.ReconnectMin, w.m.cfg.ReconnectMax, attempt-1)) != nil {
			return nil, ""
		}
		e, err := w.m.store.Get(w.ctx, w.p)
		if errors.Is(err, ErrNotFound) {
			w.m.stopAsync(w.p, true)
			return nil, ""
		}
		if err != nil {
			if w.ctx.Err() == nil {
				log.Warn("read registry entry", "err", err)
			}
			continue
		}
		if e.Status == tasks.SandboxDestroyed {
			w.m.stopAsync(w.p, true)
			return nil, ""
		}
		if !w.m.acquire(w.ctx) {
			return nil, ""
		}
		sb, err := w.m.cfg.Gateway.Find(w.ctx, w.p.Namespace, w.p.Name)
		w.m.releaseSlot()
		if err != nil {
			if w.ctx.Err() == nil {
				log.Warn("find sandbox", "err", err)
			}
			continue
		}
		if sb == nil {
			ev, err := w.m.store.SandboxStatus(w.ctx, w.p, e.SandboxID, tasks.SandboxDestroyed, "sandbox no longer exists at the gateway")
			if err != nil && !errors.Is(err, ErrNotFound) {
				log.Warn("record missing sandbox", "err", err)
				continue
			}
			w.m.emitted(ev)
			w.m.stopAsync(w.p, true)
			return nil, ""
		}
		if sb.SandboxID != e.SandboxID {
			// The gateway is the source of truth: the project has a new sandbox.
			if err := w.m.store.Upsert(w.ctx, w.p, sb.SandboxID, sb.Provider); err != nil {
				log.Warn("record replaced sandbox", "err", err)
				continue
			}
		}
		return sb, sb.SandboxID
	}
}

type entryState int

const (
	entryLive entryState = iota
	entryGone
	entryReplaced
)

// checkEntry re-reads the registry: a destroyed or removed entry ends the
// watcher (and releases its lease), another sandbox id starts a new
// session.
func (w *watcher) checkEntry(sandboxID string) entryState {
	status, id, err := w.m.store.state(w.ctx, w.p)
	switch {
	case errors.Is(err, ErrNotFound):
		w.m.stopAsync(w.p, true)
		return entryGone
	case err != nil:
		return entryLive
	case status == tasks.SandboxDestroyed:
		w.m.stopAsync(w.p, true)
		return entryGone
	case id != sandboxID:
		return entryReplaced
	}
	return entryLive
}

// readWaiting sets fast polling for as long as the waiting key lives.
func (w *watcher) readWaiting() {
	ttl, err := w.m.rdb.PTTL(w.ctx, schema.WaitingKey(w.p)).Result()
	if err != nil || ttl <= 0 {
		return
	}
	w.mu.Lock()
	if until := time.Now().Add(ttl); until.After(w.fastUntil) {
		w.fastUntil = until
	}
	w.mu.Unlock()
}

// interval is the time to the next poll: FastPoll while someone waits or a
// server is on its way somewhere; otherwise ReconcileInterval (±50 %)
// while the daemon WebSocket is subscribed, SlowPoll (±10 %) while not.
func (w *watcher) interval(now time.Time) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	if now.Before(w.fastUntil) {
		return w.m.cfg.FastPoll
	}
	for _, s := range w.servers {
		switch s.status {
		case sandboxq.ServerInstalling, sandboxq.ServerStarting, sandboxq.ServerRestarting:
			return w.m.cfg.FastPoll
		case sandboxq.ServerRunning:
			if now.Sub(s.since) < w.m.cfg.SettleAfter {
				return w.m.cfg.FastPoll
			}
		}
	}
	if w.wsUp {
		return jitter(w.m.cfg.ReconcileInterval, 0.5)
	}
	return jitter(w.m.cfg.SlowPoll, 0.1)
}

// poll lists the servers and folds what it saw, together with the events
// service's pending lines, into the store. ok is false when the daemon
// could not be asked; stop is true when the watcher must end.
func (w *watcher) poll(sess *session) (ok, stop bool) {
	w.mu.Lock()
	lines := w.lines
	w.lines = nil
	w.mu.Unlock()

	infos, polled, stop := w.listServers(sess)
	if stop {
		return false, true
	}
	now := time.Now()
	var obs []observation
	seen := map[string]string{}
	if polled {
		obs, seen = w.serverObservations(infos)
	}
	obs, sandboxes := mergeLines(obs, lines, polled, seen)
	sortObservations(obs)
	if ok, stop := w.recordServers(sess, obs, now); !ok || stop {
		return false, stop
	}
	if w.recordSandboxes(sess, sandboxes) {
		return false, true
	}
	return polled, false
}

// listServers asks the daemon for its servers. polled is false when it
// could not be asked (a refusal also asks for a new session); stop is true
// when the watcher must end.
func (w *watcher) listServers(sess *session) (infos []gateway.ServerInfo, polled, stop bool) {
	if !w.m.acquire(w.ctx) {
		return nil, false, true
	}
	infos, err := sess.daemon.ListServers(w.ctx)
	w.m.releaseSlot()
	if err == nil {
		return infos, true, false
	}
	if w.ctx.Err() != nil {
		return nil, false, true
	}
	if gateway.IsStaleSandbox(err) {
		w.askRefind()
	} else {
		w.m.log.Debug("poll servers", "project", w.member, "err", err)
	}
	return nil, false, false
}

// serverObservations turns a server list into observations, adding a
// stopped one for each server seen before and no longer listed (it was
// deleted). seen maps each listed slug to its status.
func (w *watcher) serverObservations(infos []gateway.ServerInfo) (obs []observation, seen map[string]string) {
	seen = map[string]string{}
	for _, in := range infos {
		if in.Slug == "" || in.Status == "" {
			continue
		}
		seen[in.Slug] = in.Status
		obs = append(obs, observation{slug: in.Slug, st: ServerState{
			Status: in.Status, URL: in.URL, Port: in.Port, ExitCode: in.ExitCode,
			Error: in.Error, UpdatedAt: in.UpdatedAt,
		}})
	}
	w.mu.Lock()
	for slug, s := range w.servers {
		if _, ok := seen[slug]; !ok && s.status != sandboxq.ServerStopped && s.status != sandboxq.ServerFailed {
			obs = append(obs, observation{slug: slug, st: ServerState{Status: sandboxq.ServerStopped}})
		}
	}
	w.mu.Unlock()
	return obs, seen
}

// mergeLines adds the events service's lines to the poll's observations
// and returns the sandbox ones apart.
func mergeLines(obs []observation, lines []lineEvent, polled bool, seen map[string]string) ([]observation, []sandboxObservation) {
	var sandboxes []sandboxObservation
	for _, le := range lines {
		switch {
		case le.sandbox != nil:
			sandboxes = append(sandboxes, *le.sandbox)
		case le.server != nil:
			// The poll, made after the line arrived, says the same with
			// every field: keep the poll's.
			if polled && seen[le.server.slug] == le.server.st.Status {
				continue
			}
			obs = append(obs, *le.server)
		}
	}
	return obs, sandboxes
}

// sortObservations puts obs oldest first; at equal times the line (which
// can only be the earlier state) first, and unknown times last.
func sortObservations(obs []observation) {
	slices.SortStableFunc(obs, func(a, b observation) int {
		at, bt := a.st.UpdatedAt, b.st.UpdatedAt
		switch {
		case at.IsZero() != bt.IsZero():
			if at.IsZero() {
				return 1
			}
			return -1
		case !at.Equal(bt):
			return at.Compare(bt)
		case a.fromLine != b.fromLine:
			if a.fromLine {
				return -1
			}
			return 1
		}
		return cmp.Compare(a.slug, b.slug)
	})
}

// recordServers writes the server observations to the store in order. ok
// is false when one could not be written; stop is true when the watcher
// must end.
func (w *watcher) recordServers(sess *session, obs []observation, now time.Time) (ok, stop bool) {
	for _, o := range obs {
		w.attachLogs(sess, &o)
		ev, err := w.m.store.ServerStatus(w.ctx, w.p, sess.sandboxID, o.slug, o.st)
		if errors.Is(err, ErrNotFound) {
			w.m.stopAsync(w.p, true)
			return false, true
		}
		if err != nil {
			if w.ctx.Err() != nil {
				return false, true
			}
			w.m.log.Warn("record server status", "project", w.member, "server", o.slug, "err", err)
			return false, false
		}
		w.m.emitted(ev)
		w.mu.Lock()
		w.noteLocked(o.slug, o.st.Status, now)
		w.mu.Unlock()
	}
	return true, false
}

// recordSandboxes writes the sandbox status lines to the store; it returns
// true when one said the sandbox is destroyed and the watcher must end.
func (w *watcher) recordSandboxes(sess *session, sandboxes []sandboxObservation) (stop bool) {
	for _, s := range sandboxes {
		ev, err := w.m.store.SandboxStatus(w.ctx, w.p, sess.sandboxID, s.status, s.err)
		if err != nil && w.ctx.Err() == nil && !errors.Is(err, ErrNotFound) {
			w.m.log.Warn("record sandbox status", "project", w.member, "err", err)
		}
		w.m.emitted(ev)
		if s.status == tasks.SandboxDestroyed {
			w.m.stopAsync(w.p, true)
			return true
		}
	}
	return false
}

// logTailTimeout bounds the read of a failed server's output.
const logTailTimeout = 5 * time.Second

// attachLogs adds the tail of the server's output to an observation that
// moves a server to failed or stopped (as far as this watcher knows), so
// the event of that transition carries it. A read that fails leaves the
// event without logs.
func (w *watcher) attachLogs(sess *session, o *observation) {
	if !sandboxq.ServerStatus(o.st.Status).Terminal() {
		return
	}
	w.mu.Lock()
	cur, known := w.servers[o.slug]
	w.mu.Unlock()
	if known && cur.status == o.st.Status {
		return
	}
	ctx, cancel := context.WithTimeout(w.ctx, logTailTimeout)
	defer cancel()
	logs, err := gateway.LogTail(ctx, sess.daemon, o.slug)
	if err != nil {
		w.m.log.Debug("read server logs", "project", w.member, "server", o.slug, "err", err)
		return
	}
	o.st.Logs = logs
}
