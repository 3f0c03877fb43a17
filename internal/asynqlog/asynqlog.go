// Package asynqlog adapts a *slog.Logger to asynq's Logger interface.
//
// asynq logs through its own printf-style interface (Debug, Info, Warn,
// Error, Fatal with ...any arguments). The adapter joins the arguments the
// way fmt.Sprint does and logs them as the message at the matching level,
// with component=asynq. asynq v0.26 never calls Fatal outside its tests;
// should it, the adapter logs at error level and does not exit: a library
// must not end the process of its embedder.
package asynqlog

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/hibiken/asynq"
)

// Logger implements asynq.Logger over slog.
type Logger struct{ l *slog.Logger }

var _ asynq.Logger = Logger{}

// New returns an asynq.Logger that writes to l (a discarding logger if nil).
func New(l *slog.Logger) Logger {
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	return Logger{l: l.With("component", "asynq")}
}

func (a Logger) log(level slog.Level, args []any) {
	ctx := context.Background()
	if !a.l.Enabled(ctx, level) {
		return
	}
	a.l.Log(ctx, level, fmt.Sprint(args...))
}

// Debug implements asynq.Logger.
func (a Logger) Debug(args ...any) { a.log(slog.LevelDebug, args) }

// Info implements asynq.Logger.
func (a Logger) Info(args ...any) { a.log(slog.LevelInfo, args) }

// Warn implements asynq.Logger.
func (a Logger) Warn(args ...any) { a.log(slog.LevelWarn, args) }

// Error implements asynq.Logger.
func (a Logger) Error(args ...any) { a.log(slog.LevelError, args) }

// Fatal implements asynq.Logger. It logs at error level with fatal=true and
// returns; see the package doc.
func (a Logger) Fatal(args ...any) {
	a.l.Error(fmt.Sprint(args...), "fatal", true)
}
