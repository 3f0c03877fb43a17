// Package config holds what the packages' Config types share: each has
// withDefaults (check the required fields, fill the zero values with their
// documented defaults, then validate) and validate (reject what is out of
// range, naming the field), and most have a list of duration fields
// handled the same way, which this package walks.
package config

import "time"

// Duration is one time.Duration field of a Config: its name (errors name
// it), where it is, and its documented default.
type Duration struct {
	Name    string
	Value   *time.Duration
	Default time.Duration
}

// FillDefaults sets every zero duration of ds to its default.
func FillDefaults(ds []Duration) {
	for _, d := range ds {
		if *d.Value == 0 {
			*d.Value = d.Default
		}
	}
}

// Negative returns the first negative duration of ds, if any.
func Negative(ds []Duration) (Duration, bool) {
	for _, d := range ds {
		if *d.Value < 0 {
			return d, true
		}
	}
	return Duration{}, false
}

// Field returns the Duration named name at v, with default def.
func Field(name string, v *time.Duration, def time.Duration) Duration {
	return Duration{Name: name, Value: v, Default: def}
}
