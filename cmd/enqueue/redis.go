package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sandboxq/sandboxq/internal/redisurl"
)

// defaultRedisURL is used when neither --redis-url nor REDIS_URL is set.
const defaultRedisURL = redisurl.Default

// pingTimeout bounds the PING that checks Redis is reachable before
// anything is enqueued.
const pingTimeout = 3 * time.Second

// ping checks that Redis answers within pingTimeout.
func ping(ctx context.Context, rdb redis.UniversalClient) error {
	ctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		if ctx.Err() != nil && !errors.Is(err, context.Canceled) {
			return fmt.Errorf("no answer to PING within %v", pingTimeout)
		}
		return err
	}
	return nil
}

// isConnError reports whether err means Redis could not be reached (as
// opposed to Redis answering with an error).
func isConnError(err error) bool {
	if err == nil {
		return false
	}
	if _, ok := errors.AsType[net.Error](err); ok {
		return true
	}
	return errors.Is(err, redis.ErrClosed)
}
