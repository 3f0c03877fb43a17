package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sandboxq/sandboxq"
	"github.com/sandboxq/sandboxq/internal/redistest"
	"github.com/sandboxq/sandboxq/schema"
	"github.com/sandboxq/sandboxq/tasks"
)

func intp(i int) *int { return &i }

func newStore(t *testing.T) *Store {
	t.Helper()
	return NewStore(redistest.New(t).Client(t), StoreConfig{})
}

func streamOf(t *testing.T, s *Store, p tasks.Project) []tasks.Event {
	t.Helper()
	evs, err := schema.ReadEvents(t.Context(), s.rdb, p, "0", 10000, 0)
	if err != nil {
		t.Fatalf("read events: %v", err)
	}
	return evs
}

func TestStoreUpsertEmitsCreatedOnce(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := t.Context()
	p := tasks.Project{Name: "shop"}
	for range 3 {
		if err := s.Upsert(ctx, p, "sbx_1", "local"); err != nil {
			t.Fatal(err)
		}
	}
	evs := streamOf(t, s, p)
	if len(evs) != 1 || evs[0].Type != tasks.EventSandboxStatusChanged || evs[0].Status != tasks.SandboxCreated || evs[0].SandboxID != "sbx_1" || evs[0].Namespace != "default" {
		t.Fatalf("events = %+v, want one created", evs)
	}
	e, err := s.Get(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if e.Status != tasks.SandboxReady || e.SandboxID != "sbx_1" || e.Provider != "local" || e.LastEvent == nil || e.LastEvent.ID != evs[0].ID || e.CreatedAt.IsZero() || e.LastUsed.IsZero() {
		t.Fatalf("entry = %+v", e)
	}
	// A new sandbox id for the project is a new sandbox: created again, servers reset.
	if _, err := s.ServerStatus(ctx, p, "sbx_1", "web", ServerState{Status: sandboxq.ServerReady}); err != nil {
		t.Fatal(err)
	}
	if err := s.Upsert(ctx, p, "sbx_2", "local"); err != nil {
		t.Fatal(err)
	}
	e, _ = s.Get(ctx, p)
	if e.SandboxID != "sbx_2" || len(e.Servers) != 0 {
		t.Fatalf("entry after replacement = %+v", e)
	}
	if evs := streamOf(t, s, p); len(evs) != 3 || evs[2].Status != tasks.SandboxCreated || evs[2].SandboxID != "sbx_2" {
		t.Fatalf("events = %+v", evs)
	}
}

func TestStoreServerStatusDedup(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := t.Context()
	p := tasks.Project{Namespace: "team/a", Name: "shop"}
	if _, err := s.ServerStatus(ctx, p, "sbx_1", "web", ServerState{Status: sandboxq.ServerStarting}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("server status without entry: err = %v, want ErrNotFound", err)
	}
	if err := s.Upsert(ctx, p, "sbx_1", "local"); err != nil {
		t.Fatal(err)
	}
	base := time.Now().Add(-time.Minute)
	at := func(d time.Duration) time.Time { return base.Add(d) }
	steps := []struct {
		st   ServerState
		emit bool
	}{
		{ServerState{Status: sandboxq.ServerStarting, Port: 3000, UpdatedAt: at(0)}, true},
		{ServerState{Status: sandboxq.ServerStarting, Port: 3000, UpdatedAt: at(0)}, false},
		{ServerState{Status: sandboxq.ServerRunning, Port: 3000, URL: "http://127.0.0.1:3000", UpdatedAt: at(time.Second)}, true},
		// stale: older than what was seen
		{ServerState{Status: sandboxq.ServerStarting, Port: 3000, UpdatedAt: at(0)}, false},
		{ServerState{Status: sandboxq.ServerReady, Port: 3000, URL: "http://127.0.0.1:3000", UpdatedAt: at(2 * time.Second)}, true},
		// same ms, earlier in the lifecycle: stale
		{ServerState{Status: sandboxq.ServerRunning, Port: 3000, UpdatedAt: at(2 * time.Second)}, false},
		// same status, fields left out: nothing new
		{ServerState{Status: sandboxq.ServerReady, UpdatedAt: at(2 * time.Second)}, false},
		// unknown time, same status
		{ServerState{Status: sandboxq.ServerReady}, false},
		{ServerState{Status: sandboxq.ServerFailed, ExitCode: intp(0), Error: "exit 0", UpdatedAt: at(3 * time.Second)}, true},
		{ServerState{Status: sandboxq.ServerFailed, UpdatedAt: at(3 * time.Second)}, false},
		{ServerState{Status: sandboxq.ServerFailed, ExitCode: intp(2), UpdatedAt: at(4 * time.Second)}, true},
	}
	var want []string
	for i, step := range steps {
		ev, err := s.ServerStatus(ctx, p, "sbx_1", "web", step.st)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if (ev != nil) != step.emit {
			t.Fatalf("step %d (%+v): event %+v, want emitted=%v", i, step.st, ev, step.emit)
		}
		if ev != nil {
			want = append(want, ev.Status)
			if ev.ID == "" || ev.SandboxID != "sbx_1" || ev.ServerName != "web" {
				t.Fatalf("step %d: event %+v", i, ev)
			}
		}
	}
	evs := streamOf(t, s, p)[1:]
	var got []string
	for _, e := range evs {
		got = append(got, e.Status)
	}
	if len(got) != len(want) {
		t.Fatalf("stream statuses %v, want %v", got, want)
	}
	last := evs[len(evs)-1]
	if last.ExitCode == nil || *last.ExitCode != 2 {
		t.Fatalf("last event %+v, want exit code 2", last)
	}
	e, err := s.Get(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	w := e.Servers["web"]
	if w.Status != sandboxq.ServerFailed || w.ExitCode == nil || *w.ExitCode != 2 || w.Error != "exit 0" || w.Port != 0 {
		t.Fatalf("registry web = %+v", w)
	}
	// A field recorded as unknown and filled in later is the same
	// transition: folded in without an event.
	if ev, err := s.ServerStatus(ctx, p, "sbx_1", "api", ServerState{Status: sandboxq.ServerStopped, UpdatedAt: at(5 * time.Second)}); err != nil || ev == nil {
		t.Fatalf("api stopped: %+v %v", ev, err)
	}
	if ev, err := s.ServerStatus(ctx, p, "sbx_1", "api", ServerState{Status: sandboxq.ServerStopped, ExitCode: intp(143), URL: "http://x", UpdatedAt: at(5 * time.Second)}); err != nil || ev != nil {
		t.Fatalf("api stopped with exit code: %+v %v", ev, err)
	}
	e, _ = s.Get(ctx, p)
	if a := e.Servers["api"]; a.ExitCode == nil || *a.ExitCode != 143 || a.URL != "http://x" || !a.UpdatedAt.Equal(at(5*time.Second).UTC().Truncate(time.Nanosecond)) {
		t.Fatalf("registry api = %+v", a)
	}
	// Other sandbox id: ignored.
	if ev, err := s.ServerStatus(ctx, p, "sbx_old", "web", ServerState{Status: sandboxq.ServerReady}); ev != nil || err != nil {
		t.Fatalf("stale sandbox: %v %v", ev, err)
	}
	// "" = current sandbox.
	ev, err := s.ServerStatus(ctx, p, "", "api", ServerState{Status: sandboxq.ServerStarting})
	if err != nil || ev == nil || ev.SandboxID != "sbx_1" {
		t.Fatalf("current sandbox: %+v %v", ev, err)
	}
	got2 := streamOf(t, s, p)
	if got2[len(got2)-1].SandboxID != "sbx_1" {
		t.Fatalf("stored event %+v lacks sandbox id", got2[len(got2)-1])
	}
}

// Two sources reporting the same transition at once: one event.
func TestStoreConcurrentSameTransitionOneEvent(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := t.Context()
	p := tasks.Project{Name: "race"}
	if err := s.Upsert(ctx, p, "sbx_1", "local"); err != nil {
		t.Fatal(err)
	}
	at := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	emitted := 0
	for i := range 20 {
		wg.Go(func() {
			st := ServerState{Status: sandboxq.ServerReady, UpdatedAt: at}
			if i%2 == 0 { // the poll source knows more fields
				st.URL, st.Port = "http://127.0.0.1:3000", 3000
			}
			ev, err := s.ServerStatus(ctx, p, "sbx_1", "web", st)
			if err != nil {
				t.Error(err)
				return
			}
			if ev != nil {
				mu.Lock()
				emitted++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	// Whichever came first, one event; the registry has the full state.
	evs := streamOf(t, s, p)[1:]
	if emitted != 1 || len(evs) != 1 {
		t.Fatalf("emitted %d, stream %+v", emitted, evs)
	}
	e, err := s.Get(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if w := e.Servers["web"]; w.Status != sandboxq.ServerReady || w.Port != 3000 || w.URL == "" {
		t.Fatalf("registry web = %+v", w)
	}
}

// The published copy carries the stream id; the project channel and the
// all-projects channel both get it.
func TestStorePublishesWithID(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := t.Context()
	p := tasks.Project{Namespace: "pub" + strings.ReplaceAll(t.Name(), "/", "_"), Name: "shop"}
	ps := s.rdb.Subscribe(ctx, schema.EventsChannel(p), schema.AllEventsChannel)
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Upsert(ctx, p, "sbx_1", "local"); err != nil {
		t.Fatal(err)
	}
	ev, err := s.ServerStatus(ctx, p, "sbx_1", "web", ServerState{Status: sandboxq.ServerStarting, Port: 3000})
	if err != nil || ev == nil {
		t.Fatal(ev, err)
	}
	want := map[string]int{schema.EventsChannel(p): 2, schema.AllEventsChannel: 2}
	got := map[string][]tasks.Event{}
	ch := ps.Channel()
	timeout := time.After(waitTimeout)
	for len(got[schema.EventsChannel(p)]) < 2 || len(got[schema.AllEventsChannel]) < 2 {
		select {
		case msg := <-ch:
			var e tasks.Event
			if err := json.Unmarshal([]byte(msg.Payload), &e); err != nil {
				t.Fatalf("published %q: %v", msg.Payload, err)
			}
			if e.Project() != p { // other tests share the server's pub/sub
				continue
			}
			got[msg.Channel] = append(got[msg.Channel], e)
		case <-timeout:
			t.Fatalf("published: %+v, want %v", got, want)
		}
	}
	stream := streamOf(t, s, p)
	for c, evs := range got {
		for i, e := range evs {
			if e.ID != stream[i].ID || e.Status != stream[i].Status || e.SandboxID != "sbx_1" {
				t.Fatalf("%s message %d = %+v, stream %+v", c, i, e, stream[i])
			}
		}
	}
	if got[schema.EventsChannel(p)][1].Port != 3000 || got[schema.EventsChannel(p)][1].ID != ev.ID {
		t.Fatalf("server event %+v, returned %+v", got[schema.EventsChannel(p)][1], ev)
	}
	// The stored entry holds the event JSON without the id.
	raw, err := s.rdb.XRange(ctx, schema.EventsKey(p), "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	if v := raw[1].Values[schema.EventField].(string); strings.Contains(v, `"id"`) || !strings.HasPrefix(v, `{"type":"server.status_changed"`) {
		t.Fatalf("stored %s", v)
	}
}

func TestStoreSandboxStatus(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := t.Context()
	p := tasks.Project{Name: "shop"}
	if _, err := s.SandboxStatus(ctx, p, "", tasks.SandboxError, "boom"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("without entry: %v", err)
	}
	if _, err := s.SandboxStatus(ctx, p, "", "gone", ""); err == nil || !strings.Contains(err.Error(), `"gone"`) {
		t.Fatalf("bad status: %v", err)
	}
	if err := s.Upsert(ctx, p, "sbx_1", "local"); err != nil {
		t.Fatal(err)
	}
	ev, err := s.SandboxStatus(ctx, p, "", tasks.SandboxError, "daemon unreachable")
	if err != nil || ev == nil || ev.SandboxID != "sbx_1" || ev.Error != "daemon unreachable" {
		t.Fatalf("error: %+v %v", ev, err)
	}
	if ev, err := s.SandboxStatus(ctx, p, "sbx_1", tasks.SandboxError, "again"); ev != nil || err != nil {
		t.Fatalf("same status: %+v %v", ev, err)
	}
	// Upsert of the same sandbox makes it ready again, with an event.
	if err := s.Upsert(ctx, p, "sbx_1", ""); err != nil {
		t.Fatal(err)
	}
	if ev, err := s.SandboxStatus(ctx, p, "sbx_other", tasks.SandboxDestroyed, ""); ev != nil || err != nil {
		t.Fatalf("other sandbox: %+v %v", ev, err)
	}
	if _, err := s.SandboxStatus(ctx, p, "sbx_1", tasks.SandboxDestroyed, ""); err != nil {
		t.Fatal(err)
	}
	// A destroyed sandbox takes no server observations.
	if ev, err := s.ServerStatus(ctx, p, "sbx_1", "web", ServerState{Status: sandboxq.ServerReady}); ev != nil || err != nil {
		t.Fatalf("server of destroyed sandbox: %+v %v", ev, err)
	}
	var got []string
	for _, e := range streamOf(t, s, p) {
		got = append(got, e.Status)
	}
	if want := []string{"created", "error", "ready", "destroyed"}; !slices.Equal(got, want) {
		t.Fatalf("statuses %v, want %v", got, want)
	}
	e, _ := s.Get(ctx, p)
	if e.Status != tasks.SandboxDestroyed || e.Error != "" || e.Provider != "local" {
		t.Fatalf("entry %+v", e)
	}
}

func TestStoreStreamIsCapped(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t).Client(t)
	s := NewStore(rdb, StoreConfig{MaxLen: 100})
	ctx := t.Context()
	p := tasks.Project{Name: "busy"}
	if err := s.Upsert(ctx, p, "sbx_1", "local"); err != nil {
		t.Fatal(err)
	}
	for i := range 1000 {
		if _, err := s.ServerStatus(ctx, p, "sbx_1", "web", ServerState{Status: sandboxq.ServerFailed, ExitCode: intp(i)}); err != nil {
			t.Fatal(err)
		}
	}
	n, err := rdb.XLen(ctx, schema.EventsKey(p)).Result()
	if err != nil {
		t.Fatal(err)
	}
	// MAXLEN ~ trims whole macro nodes (100 entries by default).
	if n < 100 || n > 300 {
		t.Fatalf("stream length %d, want about 100", n)
	}
}

func TestStoreListTouchRemove(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t).Client(t)
	now := time.UnixMilli(1_800_000_000_000)
	var clock sync.Mutex
	s := NewStore(rdb, StoreConfig{Now: func() time.Time {
		clock.Lock()
		defer clock.Unlock()
		now = now.Add(time.Second)
		return now
	}})
	ctx := t.Context()
	var all []tasks.Project
	for i := range 7 {
		ns := "a"
		if i%2 == 1 {
			ns = "b/slash"
		}
		p := tasks.Project{Namespace: ns, Name: fmt.Sprintf("p%d", i)}
		all = append(all, p)
		if err := s.Upsert(ctx, p, fmt.Sprintf("sbx_%d", i), "local"); err != nil {
			t.Fatal(err)
		}
	}
	mark := now.Add(time.Millisecond) // p0..p6 used before mark
	if err := s.Touch(ctx, all[0]); err != nil {
		t.Fatal(err)
	}
	if err := s.Touch(ctx, tasks.Project{Name: "nope"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("touch missing: %v", err)
	}
	if _, err := s.SandboxStatus(ctx, all[3], "", tasks.SandboxDestroyed, ""); err != nil {
		t.Fatal(err)
	}
	// Pages of 3, newest first: p0 (touched), p6, p5, ...
	var names []string
	cursor := ""
	for {
		page, next, err := s.List(ctx, ListOptions{Limit: 3, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range page {
			names = append(names, e.Name)
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if want := []string{"p0", "p6", "p5", "p4", "p3", "p2", "p1"}; !slices.Equal(names, want) {
		t.Fatalf("listed %v, want %v", names, want)
	}
	list := func(o ListOptions) []string {
		t.Helper()
		page, _, err := s.List(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range page {
			out = append(out, e.Namespace+"/"+e.Name)
		}
		return out
	}
	if got := list(ListOptions{Namespace: "b/slash"}); !slices.Equal(got, []string{"b/slash/p5", "b/slash/p3", "b/slash/p1"}) {
		t.Fatalf("namespace filter: %v", got)
	}
	if got := list(ListOptions{Status: tasks.SandboxDestroyed}); !slices.Equal(got, []string{"b/slash/p3"}) {
		t.Fatalf("status filter: %v", got)
	}
	if got := list(ListOptions{IdleSince: mark, Namespace: "a"}); !slices.Equal(got, []string{"a/p6", "a/p4", "a/p2"}) {
		t.Fatalf("idle filter: %v", got)
	}
	if _, _, err := s.List(ctx, ListOptions{Limit: 501}); err == nil || !strings.Contains(err.Error(), "500") {
		t.Fatalf("limit 501: %v", err)
	}
	if _, _, err := s.List(ctx, ListOptions{Cursor: "%%%"}); err == nil || !strings.Contains(err.Error(), "cursor") {
		t.Fatalf("bad cursor: %v", err)
	}
	if _, _, err := s.List(ctx, ListOptions{Namespace: "has space"}); err == nil {
		t.Fatal("bad namespace accepted")
	}
	if err := s.Remove(ctx, all[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, all[0]); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get removed: %v", err)
	}
	if got := list(ListOptions{Namespace: "a", Limit: 1}); !slices.Equal(got, []string{"a/p6"}) {
		t.Fatalf("after remove: %v", got)
	}
	// An index member whose hash is gone is skipped.
	if err := rdb.Del(ctx, schema.RegistryKey(all[6])).Err(); err != nil {
		t.Fatal(err)
	}
	if got := list(ListOptions{Namespace: "a"}); !slices.Equal(got, []string{"a/p4", "a/p2"}) {
		t.Fatalf("stale member: %v", got)
	}
	// Entry JSON uses the documented snake_case names.
	e, err := s.Get(ctx, all[2])
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(e)
	for _, f := range []string{"namespace", "name", "sandbox_id", "provider", "status", "error", "servers", "last_event", "last_used", "created_at", "updated_at", "watcher"} {
		if !strings.Contains(string(b), `"`+f+`":`) {
			t.Errorf("entry JSON %s lacks %q", b, f)
		}
	}
}

func TestStoreRejectsBadInput(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := t.Context()
	p := tasks.Project{Name: "x"}
	for name, err := range map[string]error{
		"project":   s.Upsert(ctx, tasks.Project{Name: "a b"}, "sbx", ""),
		"sandbox":   s.Upsert(ctx, p, "", ""),
		"slug":      second(s.ServerStatus(ctx, p, "", "", ServerState{Status: "ready"})),
		"status":    second(s.ServerStatus(ctx, p, "", "web", ServerState{})),
		"port":      second(s.ServerStatus(ctx, p, "", "web", ServerState{Status: "ready", Port: 70000})),
		"getname":   second(s.Get(ctx, tasks.Project{Name: "{x}"})),
		"removebad": s.Remove(ctx, tasks.Project{}),
	} {
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func second[T any](_ T, err error) error { return err }

func TestProjectOfMember(t *testing.T) {
	t.Parallel()
	for _, p := range []tasks.Project{{Namespace: "a/b%c", Name: "x"}, {Namespace: "default", Name: "y.z"}} {
		got, err := ProjectOfMember(schema.IndexMember(p))
		if err != nil || got != p {
			t.Errorf("%+v: %+v %v", p, got, err)
		}
	}
	for _, m := range []string{"", "noslash", "/x", "ns/", "ns/a b"} {
		if _, err := ProjectOfMember(m); err == nil {
			t.Errorf("%q accepted", m)
		}
	}
}
