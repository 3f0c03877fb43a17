package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/sandboxq/sandboxq/gateway/local"
	"github.com/sandboxq/sandboxq/internal/secret"
)

const devRedisAddr = "127.0.0.1:6379"

// devRedis returns a client for the Redis on addr (127.0.0.1:6379 in -dev),
// starting an embedded in-memory one there if nothing answers.
func devRedis(ctx context.Context, addr string, logger *slog.Logger) (redis.UniversalClient, string, func() error, error) {
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	err := rdb.Ping(pctx).Err()
	cancel()
	if err == nil {
		return rdb, "redis://" + addr, rdb.Close, nil
	}
	_ = rdb.Close()
	mr := miniredis.NewMiniRedis()
	if err := mr.StartAddr(addr); err != nil {
		return nil, "", nil, fmt.Errorf("-dev: no Redis answers on %s and an embedded one cannot listen there: %w", addr, err)
	}
	logger.Warn("NOT DURABLE: no Redis answered on " + addr + ", so an embedded in-memory Redis is serving there; every task is lost when this process exits. Set REDIS_URL or start redis-server for real use.")
	rdb = redis.NewClient(&redis.Options{Addr: mr.Addr()})
	return rdb, "embedded in-memory redis://" + mr.Addr(), func() error {
		err := rdb.Close()
		mr.Close()
		return err
	}, nil
}

func startLocalProvider(addr, root string, key secret.Secret, logger *slog.Logger) (*local.Provider, error) {
	if err := protectEnviron(); err != nil {
		logger.Warn("cannot hide this process's environment from sandbox commands", "err", err)
	}
	lp, err := local.Start(local.Config{Addr: addr, Root: root, APIKey: key, Logger: logger.With("component", "local-provider")})
	if err != nil {
		return nil, fmt.Errorf("-dev: start local provider: %w", err)
	}
	logger.Warn("COMPUTESDK_API_KEY is unset: using the local provider; sandboxes are directories on this machine and their commands and servers run as this user on this host: for development only, not an isolation boundary", "gateway", lp.URL(), "root", lp.Root())
	return lp, nil
}
