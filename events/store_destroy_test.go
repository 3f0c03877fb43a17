package events

import (
	"fmt"
	"testing"

	"github.com/sandboxq/sandboxq"
	"github.com/sandboxq/sandboxq/tasks"
)

// TestStoreUpsertReadyEmitsCreatedThenReady: a sandbox id new to the
// project gives created then ready; the same id again gives nothing.
func TestStoreUpsertReadyEmitsCreatedThenReady(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	p := tasks.Project{Name: "fresh"}
	for range 2 {
		if err := s.UpsertReady(t.Context(), p, "sbx_1", "local"); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for _, ev := range streamOf(t, s, p) {
		got = append(got, ev.Status+"/"+ev.SandboxID)
	}
	if fmt.Sprint(got) != "[created/sbx_1 ready/sbx_1]" {
		t.Fatalf("events %v, want created then ready once", got)
	}
	if e, err := s.Get(t.Context(), p); err != nil || e.Status != tasks.SandboxReady {
		t.Fatalf("entry %+v, %v", e, err)
	}
}

// TestStoreStopServers: every server not stopped is recorded stopped
// without its URL, with one event each; stopped ones and other sandboxes'
// entries are left alone; a second call emits nothing.
func TestStoreStopServers(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := t.Context()
	p := tasks.Project{Name: "servers"}
	if err := s.Upsert(ctx, p, "sbx_1", "local"); err != nil {
		t.Fatal(err)
	}
	for slug, st := range map[string]ServerState{
		"web":  {Status: sandboxq.ServerReady, URL: "http://127.0.0.1:5000", Port: 5000},
		"job":  {Status: sandboxq.ServerFailed, ExitCode: intp(2)},
		"done": {Status: sandboxq.ServerStopped},
	} {
		if _, err := s.ServerStatus(ctx, p, "sbx_1", slug, st); err != nil {
			t.Fatal(err)
		}
	}
	if evs, err := s.StopServers(ctx, p, "sbx_other"); err != nil || len(evs) != 0 {
		t.Fatalf("another sandbox's servers: %v %v", evs, err)
	}
	evs, err := s.StopServers(ctx, p, "sbx_1")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, ev := range evs {
		if ev.Type != tasks.EventServerStatusChanged || ev.Status != sandboxq.ServerStopped || ev.URL != "" || ev.SandboxID != "sbx_1" {
			t.Errorf("event %+v, want server stopped without URL", ev)
		}
		names = append(names, ev.ServerName)
	}
	if fmt.Sprint(names) != "[job web]" {
		t.Fatalf("stopped %v, want [job web]", names)
	}
	e, err := s.Get(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	for slug, st := range e.Servers {
		if st.Status != sandboxq.ServerStopped || st.URL != "" {
			t.Errorf("server %s = %+v, want stopped without URL", slug, st)
		}
	}
	if e.Servers["web"].Port != 5000 || e.Servers["job"].ExitCode == nil {
		t.Errorf("servers %+v: port and exit code should be kept", e.Servers)
	}
	if evs, err := s.StopServers(ctx, p, ""); err != nil || len(evs) != 0 {
		t.Fatalf("second call: %v %v, want nothing", evs, err)
	}
	if evs, err := s.StopServers(ctx, tasks.Project{Name: "none"}, ""); err != nil || evs != nil {
		t.Fatalf("no entry: %v %v", evs, err)
	}
}
