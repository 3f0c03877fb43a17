// Command localprovider runs the sandboxq local provider on its own: one
// loopback HTTP server that speaks the ComputeSDK gateway protocol and, under
// each sandbox's URL, the sandbox daemon protocol. Sandboxes are directories
// on this host and servers are real processes, so anything that talks to
// the ComputeSDK gateway (sandboxq's worker, the official JavaScript SDK,
// curl) can be tried without an account.
//
//	go run ./cmd/localprovider -addr 127.0.0.1:8787 -root /tmp/sandboxes
//
// It prints the gateway URL, the API key and a curl example to stdout, logs
// to stderr, and runs until SIGINT or SIGTERM, when it stops every process
// it started. All behaviour lives in package gateway/local; this command only
// turns flags into its Config.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/sandboxq/sandboxq/gateway/local"
	"github.com/sandboxq/sandboxq/internal/secret"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.As(err, new(usageError)):
		fmt.Fprintln(os.Stderr, "localprovider:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "localprovider:", err)
		os.Exit(1)
	}
}

type usageError struct{ error }

// run parses args, starts the provider, prints how to reach it and serves
// until ctx ends.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("localprovider", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		addr        = fs.String("addr", "127.0.0.1:8787", "listen `address`; a non-loopback address needs -allow-non-loopback")
		allowRemote = fs.Bool("allow-non-loopback", false, "allow listening beyond this host (sandboxes run arbitrary commands)")
		root        = fs.String("root", "", "`directory` that holds the sandboxes (default: a temporary directory removed at exit)")
		apiKey      = fs.String("api-key", "", "gateway API `key` clients must send (default: random local_<hex>)")
		logLevel    = fs.String("log-level", "info", "log `level`: debug, info, warn or error")
		faultRate   = fs.Float64("fault-rate", 0, "probability in [0,1] that a request gets an injected error")
		faultStatus = fs.Int("fault-status", 503, "HTTP `status` of injected errors")
		faultScope  = fs.String("fault-scope", "", "where errors are injected: \"\" (everywhere), gateway or daemon")
		retryAfter  = fs.Duration("fault-retry-after", 0, "Retry-After sent with injected errors (429s always get one)")
		latency     = fs.Duration("latency", 0, "latency added to every request")
		dropWS      = fs.Duration("drop-websockets-every", 0, "close every WebSocket abruptly at this period")
		seed        = fs.Int64("seed", time.Now().UnixNano(), "seed of the injected errors")
	)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: localprovider [flags]\n\n"+
			"Runs a local ComputeSDK gateway and sandbox daemons on this host.\n\n"+
			"Examples:\n"+
			"  localprovider -addr 127.0.0.1:8787\n"+
			"  localprovider -root ./sandboxes -fault-rate 0.2 -fault-status 429 -drop-websockets-every 30s\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected arguments %q", fs.Args())}
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return usageError{fmt.Errorf("-log-level %q: want debug, info, warn or error", *logLevel)}
	}
	opts := local.Config{
		Addr:             *addr,
		AllowNonLoopback: *allowRemote,
		Root:             *root,
		Path:             os.Getenv("PATH"), // so servers find the tools this shell finds
		APIKey:           secret.New(*apiKey),
		Logger:           slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})),
		Faults: local.Faults{
			Latency:             *latency,
			DropWebSocketsEvery: *dropWS,
			Seed:                *seed,
		},
	}
	if *faultRate > 0 {
		opts.Faults.Errors = []local.Fault{{Rate: *faultRate, Status: *faultStatus, RetryAfter: *retryAfter, Scope: *faultScope}}
	}
	p, err := local.Start(opts)
	if err != nil {
		return err
	}
	key := p.APIKey().Reveal() // printed on purpose: this is how the user learns it
	fmt.Fprintf(stdout, "local provider listening\n"+
		"  gateway URL: %s\n"+
		"  API key:     %s\n"+
		"  sandboxes:   %s\n\n"+
		"Point a client at it:\n"+
		"  export COMPUTESDK_GATEWAY_URL=%s\n"+
		"  export COMPUTESDK_API_KEY=%s\n\n"+
		"Try it:\n"+
		"  curl -s -X POST %s/v1/sandboxes/find-or-create \\\n"+
		"    -H 'X-ComputeSDK-API-Key: %s' -H 'Content-Type: application/json' \\\n"+
		"    -d '{\"namespace\":\"default\",\"name\":\"demo\"}'\n",
		p.URL(), key, p.Root(), p.URL(), key, p.URL(), key)
	<-ctx.Done()
	return p.Close()
}
