package testutil

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync"

	"github.com/redis/go-redis/v9"
)

// Trips is a go-redis hook that records every round trip to Redis: one
// entry per single command or per pipeline, with the arguments of each
// command in it. Add it with (*redis.Client).AddHook.
type Trips struct {
	mu    sync.Mutex
	trips [][][]string
}

func (r *Trips) add(cmds []redis.Cmder) {
	trip := make([][]string, len(cmds))
	for i, c := range cmds {
		for _, a := range c.Args() {
			trip[i] = append(trip[i], fmt.Sprint(a))
		}
	}
	r.mu.Lock()
	r.trips = append(r.trips, trip)
	r.mu.Unlock()
}

// DialHook implements redis.Hook.
func (r *Trips) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) { return next(ctx, network, addr) }
}

// ProcessHook implements redis.Hook.
func (r *Trips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		r.add([]redis.Cmder{cmd})
		return next(ctx, cmd)
	}
}

// ProcessPipelineHook implements redis.Hook.
func (r *Trips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		r.add(cmds)
		return next(ctx, cmds)
	}
}

// Reset forgets the trips recorded so far.
func (r *Trips) Reset() {
	r.mu.Lock()
	r.trips = nil
	r.mu.Unlock()
}

// Count is the number of round trips recorded.
func (r *Trips) Count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.trips)
}

// With returns the round trips that have a command with an argument equal
// to one of args (a key, a field), each as its commands' arguments.
func (r *Trips) With(args ...string) [][][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out [][][]string
	for _, trip := range r.trips {
		if slices.ContainsFunc(trip, func(cmd []string) bool {
			return slices.ContainsFunc(cmd, func(a string) bool { return slices.Contains(args, a) })
		}) {
			out = append(out, trip)
		}
	}
	return out
}

// HasCommand reports whether a round trip has a command with all of args.
func HasCommand(trip [][]string, args ...string) bool {
	return slices.ContainsFunc(trip, func(cmd []string) bool {
		for _, a := range args {
			if !slices.Contains(cmd, a) {
				return false
			}
		}
		return true
	})
}
