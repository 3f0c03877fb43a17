package tasks

import "context"

// ReadEvents returns up to count events of project p after fromID ("0": from
// the start of the retained history) without waiting for new ones.
func (c *Client) ReadEvents(ctx context.Context, p Project, fromID string, count int64) ([]Event, error) {
	return ReadEvents(ctx, c.rdb, p, fromID, count, 0)
}
