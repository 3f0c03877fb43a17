package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
)

// row is one line of the result table. The target applies to value (or
// to ratio when onRatio is set); lower says which side of it is good.
type row struct {
	metric         string
	sandboxq, base string
	ratio          float64 // 0: not meaningful
	target         string
	met            bool
	hasTarget      bool
}

// table collects rows and notes (extra tables printed before it).
type table struct {
	rows  []row
	notes []string
}

func (t *table) add(r row) { t.rows = append(t.rows, r) }

// check adds a row whose target is "value ≤ limit" (atMost) or "value ≥ limit".
func (t *table) check(metric, sq, base string, ratio float64, target string, met bool) {
	t.add(row{metric: metric, sandboxq: sq, base: base, ratio: ratio, target: target, met: met, hasTarget: target != ""})
}

func (t *table) note(s string) { t.notes = append(t.notes, s) }

func (t *table) print(w io.Writer) {
	for _, n := range t.notes {
		fmt.Fprintln(w, n)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "metric\tsandboxq\tbaseline\tratio\ttarget\tmet?")
	for _, r := range t.rows {
		ratio, met := "-", "-"
		if r.ratio != 0 {
			ratio = fmt.Sprintf("%.2f", r.ratio)
		}
		if r.hasTarget {
			met = map[bool]string{true: "yes", false: "NO"}[r.met]
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.metric, r.sandboxq, r.base, ratio, orDash(r.target), met)
	}
	tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// median of xs (sorted copy); 0 for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// percentile p (0..1) of xs, nearest rank.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

// spread formats the median and min–max range of xs with format f.
func spread(xs []float64, f string) string {
	if len(xs) == 0 {
		return "-"
	}
	return fmt.Sprintf(f+" ("+f+"–"+f+")", median(xs), slices.Min(xs), slices.Max(xs))
}

// tableText renders t for tests.
func tableText(t *table) string {
	var b strings.Builder
	t.print(&b)
	return b.String()
}
