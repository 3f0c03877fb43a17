package tasks

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sandboxq/sandboxq/schema"
)

// doneHub hears the workers' notices that a task's attempt ended
// (schema.TaskDoneChannel) for one Client and passes each to the Waits of
// that task. It holds one pub/sub connection, opened by the first Wait and
// closed by Client.Close, and one goroutine that reads it.
type doneHub struct {
	rdb    redis.UniversalClient
	logger *slog.Logger

	mu     sync.Mutex
	ps     *redis.PubSub
	waits  map[string]map[*doneWait]struct{} // task id → waits
	resub  chan struct{}                     // closed at the next (re)subscription
	closed bool
	wg     sync.WaitGroup
}

// doneWait is one Wait's registration: notice receives a value (coalesced)
// when an attempt of the task has ended.
type doneWait struct {
	id     string
	notice chan struct{}
}

// subscribeTimeout bounds the first subscription's connect.
const subscribeTimeout = 5 * time.Second

func newDoneHub(rdb redis.UniversalClient, logger *slog.Logger) *doneHub {
	return &doneHub{rdb: rdb, logger: logger, waits: map[string]map[*doneWait]struct{}{}, resub: make(chan struct{})}
}

// watch registers a wait for task id, subscribing first if no one has. A
// closed hub gives a wait that hears nothing (its Wait only polls).
func (h *doneHub) watch(id string) *doneWait {
	w := &doneWait{id: id, notice: make(chan struct{}, 1)}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return w
	}
	if h.ps == nil {
		// The subscription is confirmed later (resubscribed closes resub
		// then); a publish before that is covered by the read that
		// follows the confirmation.
		ctx, cancel := context.WithTimeout(context.Background(), subscribeTimeout)
		defer cancel()
		ps := h.rdb.Subscribe(ctx)
		if err := ps.Subscribe(ctx, schema.TaskDoneChannel); err != nil {
			// PubSub keeps the channel and subscribes once it reconnects.
			h.logger.Warn("subscribe to task notices", slog.String("err", err.Error()))
		}
		h.ps = ps
		msgs := ps.ChannelWithSubscriptions(redis.WithChannelSize(1024))
		h.wg.Go(func() { h.receive(msgs) })
	}
	set := h.waits[id]
	if set == nil {
		set = map[*doneWait]struct{}{}
		h.waits[id] = set
	}
	set[w] = struct{}{}
	return w
}

// unwatch removes a registration.
func (h *doneHub) unwatch(w *doneWait) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if set := h.waits[w.id]; set != nil {
		delete(set, w)
		if len(set) == 0 {
			delete(h.waits, w.id)
		}
	}
}

// resubscribed returns a channel closed at the next confirmation of the
// subscription (the first one, or one after a reconnect): notices may have
// been lost until then, so a Wait reads its task again. Nil once closed.
func (h *doneHub) resubscribed() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil
	}
	return h.resub
}

// receive passes each notice to the waits of its task, and each
// subscription confirmation to every wait, until the connection is closed.
func (h *doneHub) receive(msgs <-chan any) {
	for m := range msgs {
		switch m := m.(type) {
		case *redis.Subscription:
			if m.Kind != "subscribe" {
				continue
			}
			h.mu.Lock()
			if !h.closed {
				close(h.resub)
				h.resub = make(chan struct{})
			}
			h.mu.Unlock()
		case *redis.Message:
			d, err := schema.ParseTaskDone(m.Payload)
			if err != nil {
				continue
			}
			h.mu.Lock()
			for w := range h.waits[d.ID] {
				select {
				case w.notice <- struct{}{}:
				default:
				}
			}
			h.mu.Unlock()
		}
	}
}

// close closes the connection and waits for the reader; waits still
// registered go on polling.
func (h *doneHub) close() {
	h.mu.Lock()
	if !h.closed {
		h.closed = true
		close(h.resub)
	}
	ps := h.ps
	h.ps = nil
	h.mu.Unlock()
	if ps != nil {
		_ = ps.Close()
	}
	h.wg.Wait()
}

// state reports the number of registered waits and whether the hub
// holds a connection (for tests).
func (h *doneHub) state() (waits int, connected bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, set := range h.waits {
		waits += len(set)
	}
	return waits, h.ps != nil
}
