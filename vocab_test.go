package sandboxq_test

import (
	"errors"
	"testing"

	"github.com/sandboxq/sandboxq"
)

func TestServerStatusPredicates(t *testing.T) {
	for _, c := range []struct {
		s                            sandboxq.ServerStatus
		known, live, terminal, trans bool
		rank                         int
	}{
		{sandboxq.ServerInstalling, true, true, false, true, 1},
		{sandboxq.ServerStarting, true, true, false, true, 2},
		{sandboxq.ServerRunning, true, true, false, false, 3},
		{sandboxq.ServerReady, true, true, false, false, 4},
		{sandboxq.ServerRestarting, true, true, false, true, 0},
		{sandboxq.ServerFailed, true, false, true, false, 0},
		{sandboxq.ServerStopped, true, false, true, false, 0},
		{"paused", false, false, false, false, 0},
	} {
		if c.s.Known() != c.known || c.s.Live() != c.live || c.s.Terminal() != c.terminal ||
			c.s.Transitional() != c.trans || c.s.Rank() != c.rank {
			t.Errorf("%q: known %v live %v terminal %v transitional %v rank %d", c.s,
				c.s.Known(), c.s.Live(), c.s.Terminal(), c.s.Transitional(), c.s.Rank())
		}
	}
	if len(sandboxq.ServerStatuses) != 7 {
		t.Fatalf("ServerStatuses has %d entries", len(sandboxq.ServerStatuses))
	}
	for _, s := range sandboxq.ServerStatuses {
		if !s.Known() {
			t.Errorf("%q listed but not known", s)
		}
	}
}

func TestRestartPolicies(t *testing.T) {
	for _, p := range append([]string{""}, sandboxq.RestartPolicies...) {
		if !sandboxq.ValidRestartPolicy(p) {
			t.Errorf("%q rejected", p)
		}
	}
	if sandboxq.ValidRestartPolicy("sometimes") {
		t.Error("sometimes accepted")
	}
}

func TestProjectValidate(t *testing.T) {
	if err := (sandboxq.Project{Name: "shop"}).Validate(); err != nil {
		t.Fatal(err)
	}
	if got := (sandboxq.Project{Name: "shop"}).Normalize().Namespace; got != sandboxq.DefaultNamespace {
		t.Fatalf("normalized namespace %q", got)
	}
	for field, p := range map[string]sandboxq.Project{
		"name":      {Namespace: "a"},
		"namespace": {Namespace: "a b", Name: "x"},
	} {
		var ve *sandboxq.ValidationError
		if err := p.Validate(); !errors.As(err, &ve) || ve.Field != field {
			t.Errorf("%+v: %v, want a ValidationError on %s", p, err, field)
		}
	}
	if err := (sandboxq.Project{Name: "a{b}"}).Validate(); err == nil {
		t.Error("braces accepted")
	}
}
