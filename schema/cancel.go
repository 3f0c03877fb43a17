package schema

import (
	"context"

	"github.com/redis/go-redis/v9"

	"github.com/sandboxq/sandboxq"
)

// MarkCancelled sets the cancel mark of task id (CancelKey, lifetime
// CancelMarkTTL) and, for a task of project p (p.Name not empty), the copy
// in the project's slot (ProjectCancelKey) that the project lease checks,
// both in one pipelined round trip.
func MarkCancelled(ctx context.Context, rdb redis.UniversalClient, id string, p sandboxq.Project) error {
	if p.Name == "" {
		return rdb.Set(ctx, CancelKey(id), "1", CancelMarkTTL).Err()
	}
	_, err := rdb.Pipelined(ctx, func(pl redis.Pipeliner) error {
		pl.Set(ctx, ProjectCancelKey(p, id), "1", CancelMarkTTL)
		pl.Set(ctx, CancelKey(id), "1", CancelMarkTTL)
		return nil
	})
	return err
}

// IsCancelled reports whether task id has a cancel mark. Handlers check it
// when a task starts and when their context is cancelled.
func IsCancelled(ctx context.Context, rdb redis.UniversalClient, id string) (bool, error) {
	n, err := rdb.Exists(ctx, CancelKey(id)).Result()
	if err != nil {
		return false, err
	}
	return n > 0, nil
}

// CancelledAmong returns the ids, of those given, whose task has a cancel
// mark, in the order given. It costs one pipelined round trip (per cluster
// node), so a worker can poll the marks of all its running tasks.
func CancelledAmong(ctx context.Context, rdb redis.UniversalClient, ids []string) ([]string, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	cmds := make([]*redis.IntCmd, len(ids))
	_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.Exists(ctx, CancelKey(id))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var marked []string
	for i, c := range cmds {
		if c.Val() > 0 {
			marked = append(marked, ids[i])
		}
	}
	return marked, nil
}
