package tasks

import (
	"context"
	"errors"
	"log/slog"

	"github.com/sandboxq/sandboxq/schema"
)

// Event types, sandbox statuses and the Event itself are part of the Redis
// schema (package schema, which documents every key); they are repeated
// here so that producers need only this package.

// Event types (DESIGN.md §6).
const (
	EventServerStatusChanged  = schema.EventServerStatusChanged
	EventSandboxStatusChanged = schema.EventSandboxStatusChanged
)

// Sandbox statuses carried by sandbox.status_changed and the registry.
const (
	SandboxCreated   = schema.SandboxCreated
	SandboxReady     = schema.SandboxReady
	SandboxDestroyed = schema.SandboxDestroyed
	SandboxError     = schema.SandboxError
)

// Event is a normalized event of a project's sandbox (schema.Event).
type Event = schema.Event

// Events streams the project's events after fromID ("" or "0": from the
// start of the retained history; "$": only new ones) until ctx is done. The
// events channel is closed when the stream ends; the error channel then
// holds nil (ctx done) or the error that ended it. It follows the stream
// with schema.Follow: an entry that is not an event is logged and skipped.
func (c *Client) Events(ctx context.Context, namespace, name, fromID string) (<-chan Event, <-chan error) {
	out := make(chan Event)
	errc := make(chan error, 1)
	p := Project{Namespace: namespace, Name: name}.Normalize()
	go func() {
		defer close(out)
		errc <- c.follow(ctx, p, fromID, out)
	}()
	return out, errc
}

func (c *Client) follow(ctx context.Context, p Project, fromID string, out chan<- Event) error {
	if err := p.Validate(); err != nil {
		return err
	}
	for e, err := range schema.Follow(ctx, c.rdb, p, fromID) {
		var bad *schema.BadEntryError
		if errors.As(err, &bad) {
			c.logger.WarnContext(ctx, "skipping a stream entry that is not an event",
				slog.String("namespace", p.Namespace), slog.String("name", p.Name), slog.String("err", err.Error()))
			continue
		}
		if err != nil {
			return err
		}
		select {
		case out <- e:
		case <-ctx.Done():
			return nil
		}
	}
	return nil
}

// ReadEvents returns up to count events of project p after fromID ("0": from
// the start of the retained history) without waiting for new ones
// (schema.ReadEvents).
func (c *Client) ReadEvents(ctx context.Context, p Project, fromID string, count int64) ([]Event, error) {
	return schema.ReadEvents(ctx, c.rdb, p, fromID, count, 0)
}
