// Command bench runs sandboxq's benchmark scenarios, each against its
// baseline in the same run, and prints one table.
//
//	go run ./cmd/bench
//	go run ./cmd/bench -scenarios e2e,files -n 1,20 -pairs 6
//
// It starts its own redis-server on a free loopback port and its own local
// providers (child processes of itself), so nothing outside this machine's
// loopback is touched. Runs of a pair alternate (baseline, sandboxq,
// baseline, ...) so load on a shared machine hits both sides alike; ratios
// are what to read, not absolute figures.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// opts are the command-line settings.
type opts struct {
	scenarios        []string
	n                []int
	pairs            int
	filePairs        int
	fileTasks        int
	intervals        []time.Duration
	samples          int
	watchers         int
	watcherProviders int
	window           time.Duration
	watchWindow      time.Duration
	inlinePoll       time.Duration
	e2eConcurrency   int
	memFileMiB       int
	memChunks        int
}

var allScenarios = []string{"e2e", "files", "idle", "memory", "watchers"}

func main() {
	if code, ok := runChild(); ok {
		os.Exit(code)
	}
	o, err := parseFlags(os.Args[1:], os.Stderr)
	if err != nil {
		os.Exit(2)
	}
	if err := run(context.Background(), o, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string, stderr io.Writer) (opts, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o opts
	scen := fs.String("scenarios", strings.Join(allScenarios, ","), "scenarios to run: "+strings.Join(allScenarios, ","))
	ns := fs.String("n", "1,20,100", "e2e: projects at once, comma-separated")
	fs.IntVar(&o.pairs, "pairs", 6, "e2e: alternating baseline/sandboxq pairs per size")
	fs.IntVar(&o.filePairs, "file-pairs", 5, "files: alternating pairs")
	fs.IntVar(&o.fileTasks, "file-tasks", 400, "files: files:write tasks per run")
	ivs := fs.String("intervals", "100ms,250ms,500ms", "idle: task check intervals besides the default (each with the default delayed task check interval)")
	fs.IntVar(&o.samples, "samples", 31, "idle: pickups measured per interval")
	fs.IntVar(&o.watchers, "watchers", 1000, "watchers: idle watched sandboxes (10000 needs -watcher-providers 2)")
	fs.IntVar(&o.watcherProviders, "watcher-providers", 1, "watchers: provider processes behind one gateway address (1..4)")
	fs.DurationVar(&o.window, "window", 5*time.Second, "idle: window counting round trips")
	fs.DurationVar(&o.watchWindow, "watch-window", 35*time.Second, "watchers: idle window (should hold a full slow-poll cycle)")
	fs.IntVar(&o.e2eConcurrency, "e2e-concurrency", 0, "e2e: the worker's concurrency (0: its default, 20)")
	fs.DurationVar(&o.inlinePoll, "inline-poll", 50*time.Millisecond, "e2e baseline: how often inline code polls the server's status")
	fs.IntVar(&o.memFileMiB, "mem-file-mib", 10, "memory: size of each queued file in MiB")
	fs.IntVar(&o.memChunks, "mem-chunks", 25, "memory: 4 MiB files:write tasks in the many-chunks case")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	var err error
	if o.scenarios, err = parseScenarios(*scen); err == nil {
		if o.n, err = parseInts(*ns); err == nil {
			o.intervals, err = parseDurations(*ivs)
		}
	}
	if err == nil && (o.pairs < 1 || o.filePairs < 1 || o.fileTasks < 1 || o.samples < 1 || o.watchers < 1 || o.memFileMiB < 1 || o.memChunks < 1 || o.memFileMiB > 10 || o.watcherProviders < 1 || o.watcherProviders > 4) {
		err = fmt.Errorf("-pairs, -file-pairs, -file-tasks, -samples, -watchers must be ≥ 1, -mem-file-mib 1..10 and -watcher-providers 1..4")
	}
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
	}
	return o, err
}

func parseScenarios(s string) ([]string, error) {
	var out []string
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if !contains(allScenarios, f) {
			return nil, fmt.Errorf("-scenarios: unknown scenario %q (known: %s)", f, strings.Join(allScenarios, ","))
		}
		out = append(out, f)
	}
	return out, nil
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || v < 1 || v > 1000 {
			return nil, fmt.Errorf("-n: %q is not a project count in 1..1000", f)
		}
		out = append(out, v)
	}
	return out, nil
}

func parseDurations(s string) ([]time.Duration, error) {
	var out []time.Duration
	for _, f := range strings.Split(s, ",") {
		v, err := time.ParseDuration(strings.TrimSpace(f))
		if err != nil || v < time.Millisecond || v > 5*time.Second {
			return nil, fmt.Errorf("-intervals: %q is not a duration in 1ms..5s", f)
		}
		out = append(out, v)
	}
	return out, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// run starts Redis, runs the chosen scenarios and prints the table.
func run(ctx context.Context, o opts, stdout, stderr io.Writer) error {
	t, err := runScenarios(ctx, o, stderr)
	if err != nil {
		return err
	}
	t.print(stdout)
	return nil
}

// runScenarios starts Redis and a provider and runs the chosen scenarios.
func runScenarios(ctx context.Context, o opts, stderr io.Writer) (*table, error) {
	e, err := newEnv(stderr)
	if err != nil {
		return nil, err
	}
	defer e.close()
	t := &table{}
	for _, s := range o.scenarios {
		start := time.Now()
		fmt.Fprintf(stderr, "bench: %s ...\n", s)
		var err error
		switch s {
		case "e2e":
			err = e.e2e(ctx, o, t)
		case "files":
			err = e.files(ctx, o, t)
		case "idle":
			err = e.idle(ctx, o, t)
		case "memory":
			err = e.memory(ctx, o, t)
		case "watchers":
			err = e.watchersScenario(ctx, o, t)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s, err)
		}
		fmt.Fprintf(stderr, "bench: %s done in %v\n", s, time.Since(start).Round(time.Second))
	}
	return t, nil
}
