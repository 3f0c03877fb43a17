package schema

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sandboxq/sandboxq"
)

// Event types (DESIGN.md §6).
const (
	EventServerStatusChanged  = "server.status_changed"
	EventSandboxStatusChanged = "sandbox.status_changed"
)

// Sandbox statuses carried by sandbox.status_changed and the registry.
const (
	SandboxCreated   = "created"
	SandboxReady     = "ready"
	SandboxDestroyed = "destroyed"
	SandboxError     = "error"
)

// Event is a normalized event of a project's sandbox, as stored in the
// project's stream and published to its channel. The JSON is flat:
//
//	{"id":"1732600000000-0","type":"server.status_changed","namespace":"default",
//	 "name":"shop","sandbox_id":"sbx_…","timestamp":"2026-11-26T06:00:00.123Z",
//	 "server_name":"web","status":"ready","url":"http://…","port":3000}
//
// server_name, url, port, exit_code, error and logs are present only where
// they apply. ID is the Redis stream entry id (empty on the published copy until
// the entry exists, so publishers set it after XADD).
type Event struct {
	ID         string    `json:"id"`
	Type       string    `json:"type"`
	Namespace  string    `json:"namespace"`
	Name       string    `json:"name"`
	SandboxID  string    `json:"sandbox_id"`
	Timestamp  time.Time `json:"timestamp"`
	ServerName string    `json:"server_name,omitempty"`
	Status     string    `json:"status"`
	URL        string    `json:"url,omitempty"`
	Port       int       `json:"port,omitempty"`
	ExitCode   *int      `json:"exit_code,omitempty"`
	Error      string    `json:"error,omitempty"`
	// Logs is, on the server.status_changed event of a transition to
	// failed or stopped, the tail of the server's output
	// (sandboxq.LogTail).
	Logs string `json:"logs,omitempty"`
}

// Project returns the event's project.
func (e Event) Project() sandboxq.Project {
	return sandboxq.Project{Namespace: e.Namespace, Name: e.Name}
}

// BadEntryError is the error for a stream entry that is not an event (no
// EventField, or JSON that does not decode). ID is the entry's id, so a
// reader can resume after it.
type BadEntryError struct {
	ID  string
	Err error
}

func (e *BadEntryError) Error() string { return "stream entry " + e.ID + ": " + e.Err.Error() }

func (e *BadEntryError) Unwrap() error { return e.Err }

// DecodeEntry turns a stream entry into an Event, or a *BadEntryError.
func DecodeEntry(m redis.XMessage) (Event, error) {
	raw, ok := m.Values[EventField].(string)
	if !ok {
		return Event{}, &BadEntryError{ID: m.ID, Err: fmt.Errorf("no %q field", EventField)}
	}
	var e Event
	if err := json.Unmarshal([]byte(raw), &e); err != nil {
		return Event{}, &BadEntryError{ID: m.ID, Err: err}
	}
	e.ID = m.ID
	return e, nil
}

// ReadEvents returns up to count events of the project after fromID ("" or
// "0" for the beginning of the retained history), waiting up to block for
// the first one if there is none yet (0: do not wait). At an entry that is
// not an event it stops and returns the events before it with a
// *BadEntryError naming that entry, so the caller can go on after it.
func ReadEvents(ctx context.Context, rdb redis.UniversalClient, p sandboxq.Project, fromID string, count int64, block time.Duration) ([]Event, error) {
	if fromID == "" {
		fromID = "0"
	}
	if count <= 0 {
		count = 100
	}
	msgs, err := readEntries(ctx, rdb, p.Normalize(), fromID, count, block)
	if err != nil {
		return nil, err
	}
	var out []Event
	for _, m := range msgs {
		e, err := DecodeEntry(m)
		if err != nil {
			return out, err
		}
		out = append(out, e)
	}
	return out, nil
}

// readEntries reads up to count entries after fromID, by XREAD BLOCK when
// block > 0, else by XRANGE. No entry is (nil, nil).
func readEntries(ctx context.Context, rdb redis.UniversalClient, p sandboxq.Project, fromID string, count int64, block time.Duration) ([]redis.XMessage, error) {
	key := EventsKey(p)
	var msgs []redis.XMessage
	var err error
	if block > 0 {
		var streams []redis.XStream
		streams, err = rdb.XRead(ctx, &redis.XReadArgs{Streams: []string{key, fromID}, Count: count, Block: block}).Result()
		for _, s := range streams {
			msgs = append(msgs, s.Messages...)
		}
	} else {
		start := "(" + fromID
		if fromID == "0" {
			start = "-"
		}
		msgs, err = rdb.XRangeN(ctx, key, start, "+", count).Result()
	}
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read events of %s/%s: %w", p.Namespace, p.Name, err)
	}
	return msgs, nil
}

// LastEventID returns the id of the project's newest event, or "0" if it has
// none. Reading from it gives only events that happen after the call.
func LastEventID(ctx context.Context, rdb redis.UniversalClient, p sandboxq.Project) (string, error) {
	msgs, err := rdb.XRevRangeN(ctx, EventsKey(p.Normalize()), "+", "-", 1).Result()
	if err != nil {
		return "", err
	}
	if len(msgs) == 0 {
		return "0", nil
	}
	return msgs[0].ID, nil
}

// FollowBlock bounds each blocking read of Follow. A blocking XREAD is not
// interrupted when its context ends, so each read is short (and never
// outlasts the context's deadline) and Follow notices a cancelled context
// within this time.
const FollowBlock = time.Second

// followBatch is the most entries Follow reads at once.
const followBatch = 100

// Follow is the one way to follow a project's event stream: it yields the
// project's events after from, in order, as they are appended, until ctx is
// done or the caller stops ranging. from is an entry id, "" or "0" (from
// the start of the retained history) or "$" (only events appended after
// Follow started; resolved once, so nothing appended between two reads is
// missed). It reads by XREAD BLOCK with a cursor at the last entry seen.
//
// The rule for an entry that is not an event (no EventField, JSON that
// does not decode, written by someone else): Follow yields it as
// (Event{ID: entry id}, *BadEntryError) and goes on after it; the caller
// may log it and continue, or stop. A bad entry never stalls the stream.
// A failed Redis read is yielded as (Event{}, err) and ends the iteration.
// When ctx ends, the iteration ends without an error; the caller reads
// ctx.Err() if it cares.
func Follow(ctx context.Context, rdb redis.UniversalClient, p sandboxq.Project, from string) iter.Seq2[Event, error] {
	return func(yield func(Event, error) bool) {
		p = p.Normalize()
		last, err := followStart(ctx, rdb, p, from)
		if err != nil {
			if ctx.Err() == nil {
				yield(Event{}, err)
			}
			return
		}
		for ctx.Err() == nil {
			block := FollowBlock
			if dl, ok := ctx.Deadline(); ok {
				block = min(block, max(time.Until(dl), time.Millisecond))
			}
			msgs, err := readEntries(ctx, rdb, p, last, followBatch, block)
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				yield(Event{}, err)
				return
			}
			for _, m := range msgs {
				last = m.ID
				e, err := DecodeEntry(m)
				if err != nil {
					e = Event{ID: m.ID}
				}
				if !yield(e, err) {
					return
				}
			}
		}
	}
}

func followStart(ctx context.Context, rdb redis.UniversalClient, p sandboxq.Project, from string) (string, error) {
	switch from {
	case "", "0":
		return "0", nil
	case "$":
		id, err := LastEventID(ctx, rdb, p)
		if err != nil {
			return "", fmt.Errorf("read events of %s/%s: %w", p.Namespace, p.Name, err)
		}
		return id, nil
	}
	return from, nil
}
