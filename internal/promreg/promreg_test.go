package promreg

import (
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestRegisterAllOrNothing: a second registration of a series fails with
// prometheus' AlreadyRegisteredError and leaves nothing of its own behind.
func TestRegisterAllOrNothing(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	a := prometheus.NewCounter(prometheus.CounterOpts{Name: "a_total", Help: "a"})
	if err := Register(reg, "first", a); err != nil {
		t.Fatal(err)
	}
	b := prometheus.NewCounter(prometheus.CounterOpts{Name: "b_total", Help: "b"})
	a2 := prometheus.NewCounter(prometheus.CounterOpts{Name: "a_total", Help: "a"})
	err := Register(reg, "second", b, a2)
	if _, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); !ok {
		t.Fatalf("err = %v, want AlreadyRegisteredError", err)
	}
	// b was unregistered again: registering it now succeeds.
	if err := reg.Register(b); err != nil {
		t.Errorf("b left registered after the failed Register: %v", err)
	}
	if err := Register(nil, "none", a2); err != nil {
		t.Errorf("nil registry: %v", err)
	}
}

// TestBatchUndo: Undo takes back what the batch registered, so the same
// series can be registered again.
func TestBatchUndo(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	b := NewBatch(reg)
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "c_total", Help: "c"})
	if err := Register(b, "first", c); err != nil {
		t.Fatal(err)
	}
	if err := reg.Register(prometheus.NewCounter(prometheus.CounterOpts{Name: "c_total", Help: "c"})); err == nil {
		t.Fatal("c_total registered twice")
	}
	b.Undo()
	if err := reg.Register(prometheus.NewCounter(prometheus.CounterOpts{Name: "c_total", Help: "c"})); err != nil {
		t.Errorf("after Undo: %v", err)
	}
}
