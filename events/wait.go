package events

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
	"github.com/sandboxq/sandboxq/schema"
	"github.com/sandboxq/sandboxq/tasks"
)

// ErrSandboxDestroyed is returned by WaitServer when the sandbox was
// destroyed while waiting.
var ErrSandboxDestroyed = errors.New("events: sandbox destroyed")

// StateOf is the server state an event of server.status_changed reports.
func StateOf(ev tasks.Event) ServerState {
	return ServerState{Status: ev.Status, URL: ev.URL, Port: ev.Port, ExitCode: ev.ExitCode, Error: ev.Error, UpdatedAt: ev.Timestamp, Logs: ev.Logs}
}

// WaitServer reads p's event stream after fromID (take it with
// schema.LastEventID before acting, so no transition caused by the action
// is missed) until a server.status_changed event of slug satisfies until,
// and returns that state and the event's id. until sees every transition
// of slug in order, so it may record progress. A sandbox destroyed meanwhile
// ends the wait with ErrSandboxDestroyed; ctx bounds it.
//
// It reads the stream only: a server already in the wanted state before
// fromID produces no event, so callers check the state they got from the
// daemon (or Store.Get) first.
func WaitServer(ctx context.Context, rdb redis.UniversalClient, p tasks.Project, slug, fromID string, until func(ServerState) bool) (ServerState, string, error) {
	p, err := checkProject(p)
	if err != nil {
		return ServerState{}, "", err
	}
	if slug == "" || until == nil {
		return ServerState{}, "", errors.New("events: WaitServer needs a server name and an until function")
	}
	last := fromID
	for ev, err := range schema.Follow(ctx, rdb, p, fromID) {
		var bad *schema.BadEntryError
		if errors.As(err, &bad) {
			last = ev.ID // not an event: skip it (schema.Follow's rule)
			continue
		}
		if err != nil {
			return ServerState{}, last, fmt.Errorf("events: wait for server %q: %w", slug, err)
		}
		last = ev.ID
		switch {
		case ev.Type == tasks.EventServerStatusChanged && ev.ServerName == slug:
			if st := StateOf(ev); until(st) {
				return st, ev.ID, nil
			}
		case ev.Type == tasks.EventSandboxStatusChanged && ev.Status == tasks.SandboxDestroyed:
			return ServerState{}, ev.ID, ErrSandboxDestroyed
		}
	}
	return ServerState{}, last, ctx.Err()
}
