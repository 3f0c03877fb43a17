package eventhub

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sandboxq/sandboxq/schema"
	"github.com/sandboxq/sandboxq/tasks"
)

// ErrClosed is returned by Subscribe after Close.
var ErrClosed = errors.New("eventhub: closed")

// Hub multiplexes the subscriptions of a process over one connection,
// opened with the first subscription and closed with the last.
type Hub struct {
	rdb redis.UniversalClient
	log *slog.Logger

	mu     sync.Mutex
	ps     *redis.PubSub
	subs   map[string]map[*Subscription]struct{} // channel → readers
	closed bool
	wg     sync.WaitGroup
}

// Subscription is one reader's registration; Wake receives a value when the
// project's stream may have grown.
type Subscription struct {
	h       *Hub
	channel string
	wake    chan struct{}
}

// New returns a Hub over rdb; log receives unsubscribe failures.
func New(rdb redis.UniversalClient, log *slog.Logger) *Hub {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Hub{rdb: rdb, log: log, subs: map[string]map[*Subscription]struct{}{}}
}

// Subscribe registers a reader of p's events.
func (h *Hub) Subscribe(ctx context.Context, p tasks.Project) (*Subscription, error) {
	s := &Subscription{h: h, channel: schema.EventsChannel(p), wake: make(chan struct{}, 1)}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrClosed
	}
	set := h.subs[s.channel]
	if set == nil {
		if h.ps == nil {
			ps := h.rdb.Subscribe(ctx)
			if err := ps.Subscribe(ctx, s.channel); err != nil {
				_ = ps.Close()
				return nil, err
			}
			h.ps = ps
			msgs := ps.ChannelWithSubscriptions(redis.WithChannelSize(256))
			h.wg.Go(func() { h.receive(msgs) })
		} else if err := h.ps.Subscribe(ctx, s.channel); err != nil {
			return nil, err
		}
		set = map[*Subscription]struct{}{}
		h.subs[s.channel] = set
	}
	set[s] = struct{}{}
	return s, nil
}

// Wake receives a value (coalesced) when the project's stream may have
// new entries.
func (s *Subscription) Wake() <-chan struct{} { return s.wake }

// receive wakes the readers of each message's channel. A (re)subscription
// confirmation wakes them too: messages may have been lost while the
// connection was down.
func (h *Hub) receive(msgs <-chan any) {
	for m := range msgs {
		var ch string
		switch m := m.(type) {
		case *redis.Message:
			ch = m.Channel
		case *redis.Subscription:
			ch = m.Channel
		default:
			continue
		}
		h.mu.Lock()
		for s := range h.subs[ch] {
			select {
			case s.wake <- struct{}{}:
			default:
			}
		}
		h.mu.Unlock()
	}
}

// Close unregisters the reader; the last reader of a channel unsubscribes,
// and the last reader of all closes the connection.
func (s *Subscription) Close() {
	h := s.h
	h.mu.Lock()
	defer h.mu.Unlock()
	set := h.subs[s.channel]
	delete(set, s)
	if len(set) > 0 {
		return
	}
	delete(h.subs, s.channel)
	if h.ps == nil {
		return
	}
	if len(h.subs) == 0 {
		_ = h.ps.Close()
		h.ps = nil
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.ps.Unsubscribe(ctx, s.channel); err != nil {
		h.log.Warn("unsubscribe from events", "err", err.Error())
	}
}

// Close closes the connection, refuses later subscriptions and waits for
// the receiver.
func (h *Hub) Close() {
	h.mu.Lock()
	h.closed = true
	if h.ps != nil {
		_ = h.ps.Close()
		h.ps = nil
	}
	h.mu.Unlock()
	h.wg.Wait()
}

// Idle reports whether the hub has no readers and no open connection.
func (h *Hub) Idle() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs) == 0 && h.ps == nil
}
