package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
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
// server_name, url, port, exit_code and error are present only where they
// apply. ID is the Redis stream entry id (empty on the published copy until
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
}

// Project returns the event's project.
func (e Event) Project() Project { return Project{Namespace: e.Namespace, Name: e.Name} }

// EventField is the one field of every stream entry: the event's JSON
// (without its id, which is the entry id).
const EventField = "event"

// EventsKey is the capped Redis stream of a project's events:
// "sandboxq:{ns/name}:events". Entries have one field, EventField.
func EventsKey(p Project) string { return KeyPrefix + ProjectTag(p) + ":events" }

// EventsChannel is the pub/sub channel on which each event is published as
// JSON (with its id) right after it is appended to EventsKey:
// "sandboxq:{ns/name}:events".
func EventsChannel(p Project) string { return KeyPrefix + ProjectTag(p) + ":events" }

// AllEventsChannel receives every project's events too.
const AllEventsChannel = KeyPrefix + "events"

// RegistryKey is the hash describing a project's sandbox:
// "sandboxq:{ns/name}:sandbox" (fields documented in package events).
func RegistryKey(p Project) string { return KeyPrefix + ProjectTag(p) + ":sandbox" }

// RegistryIndexKey is a sorted set of every project in the registry, member
// "<namespace>/<name>" (namespace percent-encoded as in ProjectTag), score
// the last-used time in Unix milliseconds. It is the one key that is not
// per project.
const RegistryIndexKey = KeyPrefix + "sandboxes"

// WatcherKey is the lease of the worker process watching a project's
// sandbox: "sandboxq:{ns/name}:watcher", value the owner's id.
func WatcherKey(p Project) string { return KeyPrefix + ProjectTag(p) + ":watcher" }

// IndexMember is the member of p in RegistryIndexKey.
func IndexMember(p Project) string {
	p = p.Normalize()
	return tagEscaper.Replace(p.Namespace) + "/" + p.Name
}

// decodeEntry turns a stream entry into an Event.
func decodeEntry(m redis.XMessage) (Event, error) {
	raw, ok := m.Values[EventField].(string)
	if !ok {
		return Event{}, fmt.Errorf("stream entry %s has no %q field", m.ID, EventField)
	}
	var e Event
	if err := json.Unmarshal([]byte(raw), &e); err != nil {
		return Event{}, fmt.Errorf("stream entry %s: %w", m.ID, err)
	}
	e.ID = m.ID
	return e, nil
}

// ReadEvents returns up to count events of the project after fromID ("" or
// "0" for the beginning of the retained history), waiting up to block for
// the first one if there is none yet (0: do not wait).
func ReadEvents(ctx context.Context, rdb redis.UniversalClient, p Project, fromID string, count int64, block time.Duration) ([]Event, error) {
	if fromID == "" {
		fromID = "0"
	}
	if count <= 0 {
		count = 100
	}
	key := EventsKey(p.Normalize())
	var streams []redis.XStream
	var err error
	if block > 0 {
		streams, err = rdb.XRead(ctx, &redis.XReadArgs{Streams: []string{key, fromID}, Count: count, Block: block}).Result()
	} else {
		start := "(" + fromID
		if fromID == "0" {
			start = "-"
		}
		var msgs []redis.XMessage
		msgs, err = rdb.XRangeN(ctx, key, start, "+", count).Result()
		streams = []redis.XStream{{Stream: key, Messages: msgs}}
	}
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read events of %s/%s: %w", p.Namespace, p.Name, err)
	}
	var out []Event
	for _, s := range streams {
		for _, m := range s.Messages {
			e, err := decodeEntry(m)
			if err != nil {
				return out, err
			}
			out = append(out, e)
		}
	}
	return out, nil
}

// LastEventID returns the id of the project's newest event, or "0" if it has
// none. Reading from it gives only events that happen after the call.
func LastEventID(ctx context.Context, rdb redis.UniversalClient, p Project) (string, error) {
	msgs, err := rdb.XRevRangeN(ctx, EventsKey(p.Normalize()), "+", "-", 1).Result()
	if err != nil {
		return "", err
	}
	if len(msgs) == 0 {
		return "0", nil
	}
	return msgs[0].ID, nil
}

// Events streams the project's events after fromID ("" or "0": from the
// start of the retained history; "$": only new ones) until ctx is done. The
// events channel is closed when the stream ends; the error channel then
// holds nil (ctx done) or the error that ended it.
func (c *Client) Events(ctx context.Context, namespace, name, fromID string) (<-chan Event, <-chan error) {
	out := make(chan Event)
	errc := make(chan error, 1)
	p := Project{Namespace: namespace, Name: name}.Normalize()
	go func() {
		defer close(out)
		if err := p.Validate(); err != nil {
			errc <- err
			return
		}
		last := fromID
		if last == "$" {
			id, err := LastEventID(ctx, c.rdb, p)
			if err != nil {
				errc <- err
				return
			}
			last = id
		}
		for {
			evs, err := ReadEvents(ctx, c.rdb, p, last, 100, time.Second)
			if ctx.Err() != nil {
				errc <- nil
				return
			}
			if err != nil {
				errc <- err
				return
			}
			for _, e := range evs {
				select {
				case out <- e:
					last = e.ID
				case <-ctx.Done():
					errc <- nil
					return
				}
			}
		}
	}()
	return out, errc
}

// WaitingKey marks that someone waits on a project's servers:
// "sandboxq:{ns/name}:waiting", value "1", with a TTL. While it exists the
// project's watcher polls fast (see events.Expedite).
func WaitingKey(p Project) string { return KeyPrefix + ProjectTag(p) + ":waiting" }

// WatchersChannel is the pub/sub channel on which watcher managers are
// nudged: messages "claim <member>" (someone wants the project watched now)
// and "expedite <member>" (someone waits on it), member as in IndexMember.
// Nudges are hints: receivers check Redis before acting.
const WatchersChannel = KeyPrefix + "watchers"

// WatcherManagersKey is a sorted set of the live watcher managers: member
// the owner id, score the Unix milliseconds until which its heartbeat is
// valid. Managers use it to share the sandboxes fairly.
const WatcherManagersKey = KeyPrefix + "watchers:managers"
