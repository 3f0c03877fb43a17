// Package redislog adapts a *slog.Logger to go-redis's logging interface.
//
// go-redis logs through a process-wide printf-style logger of its own
// (redis.SetLogger), by default to stderr as "redis: <date> pool.go:123:
// ...", which breaks a JSON log stream. Logger formats the message the way
// fmt.Sprintf does and logs it at warn level with component=redis: go-redis
// logs only what it could not handle (failed dials, bad connections dropped
// from the pool, truncated durations). The logger is process-wide in
// go-redis, so only a program's main sets it, never a library.
package redislog

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
)

// Logger implements go-redis's internal Logging interface over slog.
type Logger struct{ l *slog.Logger }

// New returns a go-redis logger that writes to l (a discarding logger if
// nil). Install it with redis.SetLogger.
func New(l *slog.Logger) Logger {
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	return Logger{l: l.With("component", "redis")}
}

// Printf implements go-redis's Logging.
func (a Logger) Printf(ctx context.Context, format string, v ...any) {
	if ctx == nil {
		ctx = context.Background()
	}
	if !a.l.Enabled(ctx, slog.LevelWarn) {
		return
	}
	msg := strings.TrimSpace(fmt.Sprintf(format, v...))
	a.l.WarnContext(ctx, strings.TrimPrefix(msg, "redis: "))
}
