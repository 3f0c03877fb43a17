package ratelimit

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Limit is a rate with a burst: Rate calls per Per on average, of which up
// to Burst may go back to back after a quiet time.
type Limit struct {
	Rate  int
	Per   time.Duration
	Burst int
}

// IsZero reports whether the limit is off.
func (l Limit) IsZero() bool { return l.Rate == 0 }

// String formats the limit in the syntax Parse reads.
func (l Limit) String() string {
	if l.IsZero() {
		return "off"
	}
	unit := "s"
	switch l.Per {
	case time.Minute:
		unit = "m"
	case time.Hour:
		unit = "h"
	}
	return fmt.Sprintf("%d/%s,burst=%d", l.Rate, unit, l.Burst)
}

// Parse reads "N/s", "N/m" or "N/h", optionally followed by ",burst=B"
// (for example "50/s,burst=10"). Without a burst, B is 1: calls are spread
// evenly, one every Per/N. An empty string or "off" is the zero Limit (no
// limit).
func Parse(s string) (Limit, error) {
	s = strings.TrimSpace(s)
	if s == "" || strings.EqualFold(s, "off") {
		return Limit{}, nil
	}
	rate, burst, hasBurst := strings.Cut(s, ",")
	n, unit, ok := strings.Cut(strings.TrimSpace(rate), "/")
	if !ok {
		return Limit{}, fmt.Errorf("rate %q: want N/s, N/m or N/h, optionally with ,burst=B", s)
	}
	l := Limit{Burst: 1}
	var err error
	if l.Rate, err = strconv.Atoi(strings.TrimSpace(n)); err != nil || l.Rate <= 0 {
		return Limit{}, fmt.Errorf("rate %q: %q is not a positive whole number of calls", s, n)
	}
	switch strings.ToLower(strings.TrimSpace(unit)) {
	case "s", "sec", "second":
		l.Per = time.Second
	case "m", "min", "minute":
		l.Per = time.Minute
	case "h", "hour":
		l.Per = time.Hour
	default:
		return Limit{}, fmt.Errorf("rate %q: unit %q: want s, m or h", s, unit)
	}
	if hasBurst {
		k, v, ok := strings.Cut(strings.TrimSpace(burst), "=")
		if !ok || strings.TrimSpace(k) != "burst" {
			return Limit{}, fmt.Errorf("rate %q: after the comma want burst=B", s)
		}
		if l.Burst, err = strconv.Atoi(strings.TrimSpace(v)); err != nil || l.Burst <= 0 {
			return Limit{}, fmt.Errorf("rate %q: burst %q is not a positive whole number", s, v)
		}
	}
	return l, nil
}
