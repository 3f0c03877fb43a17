package main

import (
	"context"
	"fmt"
	"time"

	"github.com/sandboxq/sandboxq/internal/tracing"
	"github.com/sandboxq/sandboxq/tasks"
)

// tracingOption turns the OTEL_* variables into the client option that
// makes each enqueue a producer span, and the function that flushes the
// spans before the program exits. Off (no variable set): no option, and
// flush does nothing.
func (a *app) tracingOption(ctx context.Context) ([]tasks.ClientOption, func(), error) {
	lookup := func(k string) (string, bool) { v := a.getenv(k); return v, v != "" }
	p, err := tracing.Setup(ctx, lookup, "sandboxq-enqueue")
	if err != nil || p == nil {
		return nil, func() {}, err
	}
	flush := func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := p.Shutdown(sctx); err != nil {
			fmt.Fprintf(a.stderr, "enqueue: sending traces to %s: %v\n", p.Endpoint, err)
		}
	}
	return []tasks.ClientOption{tasks.WithTracerProvider(p)}, flush, nil
}
