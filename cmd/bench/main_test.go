package main

import (
	"context"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary act as the provider and sandbox-server
// children the benchmark starts (it re-executes itself).
func TestMain(m *testing.M) {
	if code, ok := runChild(); ok {
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// TestSmallestRun runs every scenario in its smallest configuration and
// checks the table has every row with sane figures. It asserts no timing.
func TestSmallestRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server, providers and a worker process")
	}
	o, err := parseFlags([]string{
		"-n", "1", "-pairs", "1", "-file-pairs", "1", "-file-tasks", "20",
		"-intervals", "50ms", "-samples", "2", "-window", "300ms",
		"-watchers", "3", "-watch-window", "1s", "-mem-file-mib", "1", "-mem-chunks", "2",
	}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	tb, err := runScenarios(ctx, o, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	text := tableText(tb)
	t.Log("\n" + text)
	for _, want := range []struct {
		prefix string
		zeroOK bool
	}{
		{"e2e N=1: s until all servers ready", false},
		{"files:write tasks/s", false},
		{"files:write Redis round trips/task", false},
		{"idle pickup p50 ms", false},
		{"idle Redis round trips/s", false},
		{"worker peak RSS MiB, 5 × 1 MiB files", false},
		{"worker peak RSS MiB, 8 × 1 MiB files (2 chunks)", false},
		{"worker RSS cost MiB of one 1 MiB file", true},
		{"3 idle watchers: worker RSS MiB", false},
		{"3 idle watchers: worker CPU %", true},
		{"3 idle watchers: requests/s", true},
	} {
		r, ok := findRow(tb, want.prefix)
		if !ok {
			t.Errorf("no row %q in\n%s", want.prefix, text)
			continue
		}
		if !r.hasTarget || r.target == "" {
			t.Errorf("row %q has no target", r.metric)
		}
		v, err := strconv.ParseFloat(strings.Fields(r.sandboxq)[0], 64)
		if err != nil || v < 0 || (v == 0 && !want.zeroOK) {
			t.Errorf("row %q: sandboxq figure %q is not a sane number", r.metric, r.sandboxq)
		}
		if r.base == "" || r.base == "-" {
			t.Errorf("row %q has no baseline", r.metric)
		}
	}
	if !strings.Contains(text, "bare asynq") || !strings.Contains(text, "metric") {
		t.Errorf("table lacks its header or the interval table:\n%s", text)
	}
}

func findRow(tb *table, prefix string) (row, bool) {
	for _, r := range tb.rows {
		if strings.HasPrefix(r.metric, prefix) {
			return r, true
		}
	}
	return row{}, false
}

// TestFlagsRejectBadInput checks that bad flags name what is wrong.
func TestFlagsRejectBadInput(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-scenarios", "e2e,nope"}, `unknown scenario "nope"`},
		{[]string{"-n", "0"}, `-n: "0"`},
		{[]string{"-intervals", "fast"}, `-intervals: "fast"`},
		{[]string{"-watcher-providers", "9"}, "-watcher-providers 1..4"},
	} {
		var stderr strings.Builder
		if _, err := parseFlags(c.args, &stderr); err == nil || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("%v: err %v, stderr %q; want it to mention %q", c.args, err, stderr.String(), c.want)
		}
	}
}
