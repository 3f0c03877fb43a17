package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/sandboxq/sandboxq"
	"github.com/sandboxq/sandboxq/events"
	"github.com/sandboxq/sandboxq/gateway"
	"github.com/sandboxq/sandboxq/tasks"
)

// Direct tests of the handlers' tricky paths, with fakes of the gateway,
// the daemon and the store: no Redis, no asynq server.

var testProject = tasks.Project{Namespace: "team-a", Name: "web"}

func statusErr(op string, status int) error {
	return &gateway.APIError{Op: op, StatusCode: status, Message: "refused for the test"}
}

// oneSandbox is a gateway whose project has sandbox sb.
func oneSandbox(sb *gateway.Sandbox) *mockGateway {
	return &mockGateway{
		FindFn: func(context.Context, string, string) (*gateway.Sandbox, error) { return sb, nil },
		FindOrCreateFn: func(context.Context, string, string, *gateway.CreateOptions) (*gateway.Sandbox, error) {
			return sb, nil
		},
	}
}

func daemonOf(d Daemon) func(*gateway.Sandbox) Daemon {
	return func(*gateway.Sandbox) Daemon { return d }
}

func filesPayload(paths ...string) tasks.FilesWrite {
	p := tasks.FilesWrite{Project: testProject}
	for _, path := range paths {
		p.Files = append(p.Files, tasks.File{Path: path, Content: "content of " + path})
	}
	return p
}

// batchPaths records the paths of every batch sent.
type batchPaths struct {
	mu      sync.Mutex
	batches [][]string
}

func (b *batchPaths) add(files []gateway.BatchFile) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var paths []string
	for _, f := range files {
		paths = append(paths, f.Path)
	}
	b.batches = append(b.batches, paths)
}

// TestFilesWriteRetrySendsOnlyPending: the first attempt's batch answers
// 207 with two of three paths unconfirmed, and writing those alone fails
// with 503: the attempt fails retryably and its result lists them pending.
// The retry reads that result back and sends only the two pending paths,
// and its result counts all three written.
func TestFilesWriteRetrySendsOnlyPending(t *testing.T) {
	t.Parallel()
	var sent batchPaths
	firstAttempt := true
	d := &mockDaemon{
		BatchFilesFn: func(_ context.Context, files []gateway.BatchFile) ([]gateway.BatchResult, error) {
			sent.add(files)
			var out []gateway.BatchResult
			for _, f := range files {
				ok := !firstAttempt || f.Path == "a.txt"
				out = append(out, gateway.BatchResult{Path: f.Path, Success: ok})
			}
			return out, nil
		},
		WriteFileFn: func(_ context.Context, path, _ string) (*gateway.FileInfo, error) {
			return nil, statusErr("daemon.write_file", 503)
		},
	}
	var checkpoint []byte
	results := &mockResults{ResultFn: func(_ context.Context, queue, id string) ([]byte, error) {
		if queue != "default" || id != "files-1" {
			t.Errorf("previous result read for %s/%s", queue, id)
		}
		return checkpoint, nil
	}}
	h := newTestHandlers(t, Config{Gateway: oneSandbox(&gateway.Sandbox{SandboxID: "sbx-1"}), Daemons: daemonOf(d), Results: results})
	p := filesPayload("a.txt", "b.txt", "c.txt")

	log, err := work(t, t.Context(), h, h.filesWrite, p, attempt{id: "files-1"})
	if err == nil || errors.Is(err, asynq.SkipRetry) {
		t.Fatalf("first attempt: err = %v, want a retryable error", err)
	}
	var first FilesResult
	if !log.last(t, &first) {
		t.Fatal("first attempt wrote no result")
	}
	if first.Written != 1 || !slices.Equal(first.Pending, []string{"b.txt", "c.txt"}) || len(first.Failed) != 0 {
		t.Fatalf("first attempt result = %+v, want 1 written and b.txt, c.txt pending", first)
	}
	checkpoint = log.writes[len(log.writes)-1]

	firstAttempt = false
	log, err = work(t, t.Context(), h, h.filesWrite, p, attempt{id: "files-1", retried: 1})
	if err != nil {
		t.Fatalf("retry: %v", err)
	}
	if got := sent.batches[len(sent.batches)-1]; !slices.Equal(got, []string{"b.txt", "c.txt"}) {
		t.Errorf("retry sent %v, want only the pending b.txt, c.txt", got)
	}
	var second FilesResult
	if !log.last(t, &second) || second.Written != 3 || len(second.Pending) != 0 || second.Files != 3 {
		t.Errorf("retry result = %+v, want 3 of 3 written, nothing pending", second)
	}
}

// TestFilesWritePerPath4xxIsPermanent: a path the batch did not confirm
// and that a write alone refuses with 4xx is failed for good (the task is
// archived, the result names it with the daemon's message), while a path
// refused with 5xx stays pending.
func TestFilesWritePerPath4xxIsPermanent(t *testing.T) {
	t.Parallel()
	d := &mockDaemon{
		BatchFilesFn: func(_ context.Context, files []gateway.BatchFile) ([]gateway.BatchResult, error) {
			var out []gateway.BatchResult
			for _, f := range files {
				out = append(out, gateway.BatchResult{Path: f.Path, Success: f.Path == "ok.txt", Error: "no"})
			}
			return out, nil
		},
		WriteFileFn: func(_ context.Context, path, _ string) (*gateway.FileInfo, error) {
			if path == "locked/x.txt" {
				return nil, statusErr("daemon.write_file", 403)
			}
			return nil, statusErr("daemon.write_file", 502)
		},
	}
	h := newTestHandlers(t, Config{Gateway: oneSandbox(&gateway.Sandbox{SandboxID: "sbx-1"}), Daemons: daemonOf(d)})
	log, err := work(t, t.Context(), h, h.filesWrite, filesPayload("ok.txt", "locked/x.txt", "flaky.txt"), attempt{})
	if !errors.Is(err, asynq.SkipRetry) || !strings.Contains(err.Error(), "1 of 3 files refused") {
		t.Fatalf("err = %v, want a permanent error naming 1 of 3 files refused", err)
	}
	var res FilesResult
	if !log.last(t, &res) {
		t.Fatal("no result written")
	}
	if len(res.Failed) != 1 || res.Failed[0].Path != "locked/x.txt" || !strings.Contains(res.Failed[0].Error, "HTTP 403") {
		t.Errorf("failed = %+v, want locked/x.txt with its HTTP 403", res.Failed)
	}
	if !slices.Equal(res.Pending, []string{"flaky.txt"}) || res.Written != 1 {
		t.Errorf("result = %+v, want ok.txt written and flaky.txt pending", res)
	}
}

// staleCache is a gateway whose answer changes: the first lookup returns
// old, every later one fresh. It counts the lookups.
type staleCache struct {
	mu         sync.Mutex
	old, fresh *gateway.Sandbox
	lookups    int
}

func (s *staleCache) gateway() *mockGateway {
	next := func() *gateway.Sandbox {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.lookups++
		if s.lookups == 1 {
			return s.old
		}
		return s.fresh
	}
	return &mockGateway{
		FindFn: func(context.Context, string, string) (*gateway.Sandbox, error) { return next(), nil },
		FindOrCreateFn: func(context.Context, string, string, *gateway.CreateOptions) (*gateway.Sandbox, error) {
			return next(), nil
		},
	}
}

// commandDaemons answers command:run per sandbox: the old sandbox with
// status, the fresh one with exit code 0. calls records the sandbox ids.
func commandDaemons(status int, calls *[]string, mu *sync.Mutex) func(*gateway.Sandbox) Daemon {
	return func(sb *gateway.Sandbox) Daemon {
		return &mockDaemon{RunCommandFn: func(context.Context, gateway.RunCommandRequest) (*gateway.CommandResult, error) {
			mu.Lock()
			*calls = append(*calls, sb.SandboxID)
			mu.Unlock()
			if sb.SandboxID == "sbx-old" {
				return nil, statusErr("daemon.run_command", status)
			}
			zero := 0
			return &gateway.CommandResult{ExitCode: &zero, Stdout: "hi"}, nil
		}}
	}
}

// TestStaleCacheRetryAfter404: a sandbox remembered from an earlier task
// answers 404 (it was replaced): the handler looks the project up afresh,
// records the new sandbox in the registry and runs the command once more
// on it, and the task succeeds.
func TestStaleCacheRetryAfter404(t *testing.T) {
	t.Parallel()
	sc := &staleCache{old: &gateway.Sandbox{SandboxID: "sbx-old", Token: "t1"}, fresh: &gateway.Sandbox{SandboxID: "sbx-new", Token: "t2"}}
	var mu sync.Mutex
	var calls, recorded []string
	store := &mockStore{
		UpsertReadyFn: func(_ context.Context, _ tasks.Project, id, _ string) error {
			mu.Lock()
			recorded = append(recorded, id)
			mu.Unlock()
			return nil
		},
		TouchFn: func(context.Context, tasks.Project) error { return nil },
	}
	h := newTestHandlers(t, Config{Gateway: sc.gateway(), Daemons: commandDaemons(404, &calls, &mu), Store: store, CacheTTL: time.Hour})

	// An earlier task found (and cached) the old sandbox.
	if _, _, err := h.resolver.lookup(t.Context(), testProject, true, false); err != nil {
		t.Fatal(err)
	}
	log, err := work(t, t.Context(), h, h.commandRun, tasks.CommandRun{Project: testProject, Command: "echo hi"}, attempt{})
	if err != nil {
		t.Fatalf("command:run on a stale cache: %v", err)
	}
	var res CommandResult
	if !log.last(t, &res) || res.Stdout != "hi" {
		t.Errorf("result = %+v", res)
	}
	if !slices.Equal(calls, []string{"sbx-old", "sbx-new"}) {
		t.Errorf("daemon calls went to %v, want sbx-old then sbx-new", calls)
	}
	if sc.lookups != 2 {
		t.Errorf("%d gateway lookups, want 2 (the cached one and the fresh one)", sc.lookups)
	}
	if !slices.Equal(recorded, []string{"sbx-new"}) {
		t.Errorf("registry recorded %v, want the fresh sbx-new", recorded)
	}
	// The fresh answer is remembered: the next task goes straight to it.
	calls = nil
	if _, err := work(t, t.Context(), h, h.commandRun, tasks.CommandRun{Project: testProject, Command: "echo hi"}, attempt{}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(calls, []string{"sbx-new"}) || sc.lookups != 2 {
		t.Errorf("next task: calls %v after %d lookups, want sbx-new from the cache", calls, sc.lookups)
	}
}

// TestStaleCacheNotRetriedOn403: a 403 is not a stale sandbox
// (gateway.IsStaleSandbox): no fresh lookup, no second call, and the task
// fails permanently with the 403.
func TestStaleCacheNotRetriedOn403(t *testing.T) {
	t.Parallel()
	sc := &staleCache{old: &gateway.Sandbox{SandboxID: "sbx-old", Token: "t1"}, fresh: &gateway.Sandbox{SandboxID: "sbx-new", Token: "t2"}}
	var mu sync.Mutex
	var calls []string
	h := newTestHandlers(t, Config{Gateway: sc.gateway(), Daemons: commandDaemons(403, &calls, &mu), CacheTTL: time.Hour})
	if _, _, err := h.resolver.lookup(t.Context(), testProject, true, false); err != nil {
		t.Fatal(err)
	}
	_, err := work(t, t.Context(), h, h.commandRun, tasks.CommandRun{Project: testProject, Command: "echo hi"}, attempt{})
	if !errors.Is(err, gateway.ErrForbidden) || !errors.Is(err, asynq.SkipRetry) {
		t.Fatalf("err = %v, want the permanent 403", err)
	}
	if !slices.Equal(calls, []string{"sbx-old"}) || sc.lookups != 1 {
		t.Errorf("calls %v after %d lookups, want one call and no fresh lookup", calls, sc.lookups)
	}
}

// stream is a fake project event stream: events with ids 1, 2, 3, …, of
// which WaitServer returns those after fromID in order, and blocks until
// its ctx ends when there are none.
type stream struct {
	mu      sync.Mutex
	states  []events.ServerState
	changed chan struct{}
	reads   []string // the fromIDs of the WaitServer calls
}

func newStream() *stream { return &stream{changed: make(chan struct{})} }

// head is the id of the newest event ("0" if none).
func (s *stream) head() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return itoa(len(s.states))
}

func (s *stream) append(st events.ServerState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.states = append(s.states, st)
	close(s.changed)
	s.changed = make(chan struct{})
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func (s *stream) wait(ctx context.Context, _ tasks.Project, _ string, fromID string, until func(events.ServerState) bool) (events.ServerState, string, error) {
	s.mu.Lock()
	s.reads = append(s.reads, fromID)
	s.mu.Unlock()
	var from int
	_ = json.Unmarshal([]byte(fromID), &from)
	for {
		s.mu.Lock()
		states, changed := s.states, s.changed
		s.mu.Unlock()
		for i := from; i < len(states); i++ {
			if until(states[i]) {
				return states[i], itoa(i + 1), nil
			}
		}
		from = len(states)
		select {
		case <-ctx.Done():
			return events.ServerState{}, itoa(from), ctx.Err()
		case <-changed:
		}
	}
}

func (s *stream) store() *mockStore {
	return &mockStore{
		LastEventIDFn: func(context.Context, tasks.Project) (string, error) { return s.head(), nil },
		ExpediteFn:    func(context.Context, tasks.Project) error { return nil },
		WaitServerFn:  s.wait,
		TouchFn:       func(context.Context, tasks.Project) error { return nil },
		UpsertReadyFn: func(context.Context, tasks.Project, string, string) error { return nil },
	}
}

func startPayload(waitMS int64) tasks.ServerStart {
	f := false
	return tasks.ServerStart{Project: testProject, Slug: "web", Command: "npm run dev", WaitTimeoutMS: waitMS, Ensure: &f}
}

// TestServerReadyBeforeTheWaitBegan: the server becomes ready while the
// task is still starting it, before its wait begins. The wait reads the
// stream from the position taken before the task acted, so it sees that
// event at once (the direct status reads are an hour apart here, and the
// wait would time out without it).
func TestServerReadyBeforeTheWaitBegan(t *testing.T) {
	t.Parallel()
	s := newStream()
	s.append(events.ServerState{Status: sandboxq.ServerStopped}) // an older run, before the task
	d := &mockDaemon{
		GetServerFn: func(context.Context, string) (*gateway.ServerInfo, error) {
			return nil, statusErr("daemon.get_server", 404)
		},
		StartServerFn: func(_ context.Context, o gateway.ServerStartOptions) (*gateway.ServerInfo, error) {
			// The daemon answers "starting", and the watcher records the
			// ready that follows before the handler gets to wait.
			s.append(events.ServerState{Status: sandboxq.ServerStarting})
			s.append(events.ServerState{Status: sandboxq.ServerReady, URL: "http://web.test", Port: 3000})
			return &gateway.ServerInfo{Slug: o.Slug, Status: sandboxq.ServerStarting}, nil
		},
	}
	h := newTestHandlers(t, Config{Gateway: oneSandbox(&gateway.Sandbox{SandboxID: "sbx-1"}), Daemons: daemonOf(d), Store: s.store(), FallbackRead: time.Hour})
	log, err := work(t, t.Context(), h, h.serverStart, startPayload(30_000), attempt{})
	if err != nil {
		t.Fatalf("server:start: %v", err)
	}
	var res ServerResult
	if !log.last(t, &res) || res.Status != sandboxq.ServerReady || res.URL != "http://web.test" || res.Action != "started" {
		t.Errorf("result = %+v, want ready at http://web.test, started", res)
	}
	if len(s.reads) == 0 || s.reads[0] != "1" {
		t.Errorf("the wait read the stream from %v, want from 1 (the position before the start)", s.reads)
	}
}

// TestServerReadyAtOnceDoesNotWait: a start that answers ready ends the
// task without reading the stream.
func TestServerReadyAtOnceDoesNotWait(t *testing.T) {
	t.Parallel()
	s := newStream()
	st := s.store()
	st.WaitServerFn = func(context.Context, tasks.Project, string, string, func(events.ServerState) bool) (events.ServerState, string, error) {
		t.Error("waited for a server that was ready")
		return events.ServerState{}, "", errors.New("unexpected wait")
	}
	st.ExpediteFn = func(context.Context, tasks.Project) error {
		t.Error("expedited the watcher of a server that was ready")
		return nil
	}
	d := &mockDaemon{
		GetServerFn: func(context.Context, string) (*gateway.ServerInfo, error) {
			return nil, statusErr("daemon.get_server", 404)
		},
		StartServerFn: func(_ context.Context, o gateway.ServerStartOptions) (*gateway.ServerInfo, error) {
			return &gateway.ServerInfo{Slug: o.Slug, Status: sandboxq.ServerReady}, nil
		},
	}
	h := newTestHandlers(t, Config{Gateway: oneSandbox(&gateway.Sandbox{SandboxID: "sbx-1"}), Daemons: daemonOf(d), Store: st})
	if _, err := work(t, t.Context(), h, h.serverStart, startPayload(0), attempt{}); err != nil {
		t.Fatal(err)
	}
}

// TestServerWaitChecksAnEarlyEndAgainstTheDaemon: server:start replaces a
// failed server; the stream after the task's position begins with that old
// server's end (stopped). The daemon, read directly, says the new run is
// starting, so that ending is not believed, and the task ends ready.
func TestServerWaitChecksAnEarlyEndAgainstTheDaemon(t *testing.T) {
	t.Parallel()
	s := newStream()
	var mu sync.Mutex
	started := false
	code := 1
	d := &mockDaemon{
		GetServerFn: func(context.Context, string) (*gateway.ServerInfo, error) {
			mu.Lock()
			defer mu.Unlock()
			if !started {
				return &gateway.ServerInfo{Slug: "web", Status: sandboxq.ServerFailed, Start: "npm run dev"}, nil
			}
			return &gateway.ServerInfo{Slug: "web", Status: sandboxq.ServerStarting, Start: "npm run dev"}, nil
		},
		DeleteServerFn: func(context.Context, string) error {
			// The watcher records the old server's end only now.
			s.append(events.ServerState{Status: sandboxq.ServerStopped, ExitCode: &code})
			return nil
		},
		StartServerFn: func(_ context.Context, o gateway.ServerStartOptions) (*gateway.ServerInfo, error) {
			mu.Lock()
			started = true
			mu.Unlock()
			go func() {
				s.append(events.ServerState{Status: sandboxq.ServerStarting})
				s.append(events.ServerState{Status: sandboxq.ServerReady, URL: "http://web.test"})
			}()
			return &gateway.ServerInfo{Slug: o.Slug, Status: sandboxq.ServerStarting}, nil
		},
	}
	h := newTestHandlers(t, Config{Gateway: oneSandbox(&gateway.Sandbox{SandboxID: "sbx-1"}), Daemons: daemonOf(d), Store: s.store(), FallbackRead: time.Hour})
	log, err := work(t, t.Context(), h, h.serverStart, startPayload(30_000), attempt{})
	if err != nil {
		t.Fatalf("server:start: %v", err)
	}
	var res ServerResult
	if !log.last(t, &res) || res.Status != sandboxq.ServerReady || res.Action != "restarted" {
		t.Errorf("result = %+v, want ready, restarted", res)
	}
}

// startingDaemon has a server that starts and never gets further; it
// counts status reads and stops.
type startingDaemon struct {
	mockDaemon
	mu           sync.Mutex
	reads, stops int
	read         chan struct{} // receives after a status read, if there is room
}

func newStartingDaemon() *startingDaemon {
	d := &startingDaemon{read: make(chan struct{}, 100)}
	started := false
	d.GetServerFn = func(context.Context, string) (*gateway.ServerInfo, error) {
		d.mu.Lock()
		defer d.mu.Unlock()
		if !started {
			return nil, statusErr("daemon.get_server", 404)
		}
		d.reads++
		select {
		case d.read <- struct{}{}:
		default: // nobody is listening
		}
		return &gateway.ServerInfo{Slug: "web", Status: sandboxq.ServerStarting}, nil
	}
	d.StartServerFn = func(_ context.Context, o gateway.ServerStartOptions) (*gateway.ServerInfo, error) {
		d.mu.Lock()
		defer d.mu.Unlock()
		started = true
		return &gateway.ServerInfo{Slug: o.Slug, Status: sandboxq.ServerStarting}, nil
	}
	d.StopServerFn = func(context.Context, string) error {
		d.mu.Lock()
		defer d.mu.Unlock()
		d.stops++
		return nil
	}
	return d
}

// TestServerWaitTimesOut: polling a server that stays starting ends at the
// payload's wait timeout as a permanent failure that says so, with the
// last status in the result.
func TestServerWaitTimesOut(t *testing.T) {
	t.Parallel()
	d := newStartingDaemon()
	h := newTestHandlers(t, Config{Gateway: oneSandbox(&gateway.Sandbox{SandboxID: "sbx-1"}), Daemons: daemonOf(d), PollInterval: 5 * time.Millisecond})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	log, err := work(t, ctx, h, h.serverStart, startPayload(200), attempt{})
	if !errors.Is(err, asynq.SkipRetry) || !strings.Contains(err.Error(), `server "web" was not ready within 200ms (status starting)`) {
		t.Fatalf("err = %v, want the permanent wait timeout", err)
	}
	var res ServerResult
	if !log.last(t, &res) || res.Status != sandboxq.ServerStarting || res.WaitedMS < 200 {
		t.Errorf("result = %+v, want starting after ≥ 200 ms", res)
	}
}

// TestServerStartCancelledWhileWaiting: a server:start cancelled (through
// tasks.Client.Cancel, which cancels the handler's context with the
// cancellation cause) while it waits returns the cancellation, not a
// timeout, and stops the server it started.
func TestServerStartCancelledWhileWaiting(t *testing.T) {
	t.Parallel()
	d := newStartingDaemon()
	h := newTestHandlers(t, Config{Gateway: oneSandbox(&gateway.Sandbox{SandboxID: "sbx-1"}), Daemons: daemonOf(d), PollInterval: 5 * time.Millisecond})
	ctx, cancel := context.WithCancelCause(t.Context())
	defer cancel(nil)
	go func() {
		select {
		case <-d.read: // the wait has begun
			cancel(errCancelled)
		case <-ctx.Done():
		}
	}()
	_, err := work(t, ctx, h, h.serverStart, startPayload(60_000), attempt{})
	if !errors.Is(err, errCancelled) {
		t.Fatalf("err = %v, want the cancellation", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stops != 1 {
		t.Errorf("the started server was stopped %d times, want once", d.stops)
	}
}

// TestConfigPeers: the peers New requires, each refused with an error that
// names the field (a nil *gateway.Client included), and Redis needed only
// for the default Locks and Results.
func TestConfigPeers(t *testing.T) {
	t.Parallel()
	var nilClient *gateway.Client
	d := &mockDaemon{}
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "Config.Gateway is required"},
		{Config{Gateway: nilClient}, "Config.Gateway is required"},
		{Config{Gateway: &mockGateway{}, Locks: freeLocks(), Results: noResults()}, "Config.Daemons is required"},
		{Config{Gateway: &mockGateway{}, Daemons: daemonOf(d), Locks: freeLocks()}, "Config.Redis is required"},
	} {
		if _, err := New(c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%+v) = %v, want an error naming %q", c.cfg, err, c.want)
		}
	}
	var nilStore *events.Store
	h, err := New(Config{Gateway: &mockGateway{}, Daemons: daemonOf(d), Locks: freeLocks(), Results: noResults(), Store: nilStore})
	if err != nil {
		t.Fatalf("New without Redis: %v", err)
	}
	if h.cfg.Store != nil {
		t.Error("a nil *events.Store counts as a Store")
	}
}
