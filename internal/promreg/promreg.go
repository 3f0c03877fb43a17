// Package promreg registers a package's Prometheus collectors all at once:
// each package that measures something (gateway, events, handlers) owns its
// series and registers them exactly once per registry.
package promreg

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Register registers every collector with reg, or none: when one fails
// (a second registration of the same series is an error, never shared
// silently) those registered before it are unregistered again and the
// error names who registered. A nil reg registers nothing.
func Register(reg prometheus.Registerer, who string, cs ...prometheus.Collector) error {
	if reg == nil {
		return nil
	}
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			for _, done := range cs[:i] {
				reg.Unregister(done)
			}
			return fmt.Errorf("%s: register metrics (once per registry): %w", who, err)
		}
	}
	return nil
}

// Batch is a Registerer that remembers what it registered, so that a
// constructor that fails after some packages registered their series can
// take them all back (Undo) and leave the registry as it found it.
type Batch struct {
	reg  prometheus.Registerer
	done []prometheus.Collector
}

// NewBatch returns a Batch over reg.
func NewBatch(reg prometheus.Registerer) *Batch { return &Batch{reg: reg} }

// Register implements prometheus.Registerer.
func (b *Batch) Register(c prometheus.Collector) error {
	if err := b.reg.Register(c); err != nil {
		return err
	}
	b.done = append(b.done, c)
	return nil
}

// MustRegister implements prometheus.Registerer.
func (b *Batch) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := b.Register(c); err != nil {
			panic(err)
		}
	}
}

// Unregister implements prometheus.Registerer.
func (b *Batch) Unregister(c prometheus.Collector) bool { return b.reg.Unregister(c) }

// Undo unregisters everything registered through b.
func (b *Batch) Undo() {
	for _, c := range b.done {
		b.reg.Unregister(c)
	}
	b.done = nil
}
