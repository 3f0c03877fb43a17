package tasks

import "context"

// AwaitSubscribed opens c's subscription to task notices and returns once
// Redis has confirmed it. c must not have waited before.
func AwaitSubscribed(ctx context.Context, c *Client) error {
	rs := c.done.resubscribed()
	w := c.done.watch("")
	defer c.done.unwatch(w)
	select {
	case <-rs:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// WaitState reports how many Waits c has registered and whether it holds
// its subscription.
func WaitState(c *Client) (waits int, connected bool) { return c.done.state() }
