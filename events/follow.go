package events

import (
	"context"

	"github.com/sandboxq/sandboxq/schema"
	"github.com/sandboxq/sandboxq/tasks"
)

// The methods below give what a server wait needs (the handlers' server
// waits) on the store's own Redis, so that a caller depends on the store
// alone and can be tested with a fake of it.

// LastEventID is the id of p's newest event ("0" if none): take it before
// acting, and wait from it (schema.LastEventID).
func (s *Store) LastEventID(ctx context.Context, p tasks.Project) (string, error) {
	return schema.LastEventID(ctx, s.rdb, p)
}

// Expedite asks p's watcher, wherever it runs, to poll fast for a while
// (Expedite with the default duration).
func (s *Store) Expedite(ctx context.Context, p tasks.Project) error {
	return Expedite(ctx, s.rdb, p, 0)
}

// WaitServer is WaitServer on the store's Redis.
func (s *Store) WaitServer(ctx context.Context, p tasks.Project, slug, fromID string, until func(ServerState) bool) (ServerState, string, error) {
	return WaitServer(ctx, s.rdb, p, slug, fromID, until)
}
