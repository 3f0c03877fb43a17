package backoff

import (
	"testing"
	"time"
)

func TestCeilingAndDelay(t *testing.T) {
	t.Parallel()
	p := Policy{Base: time.Second, Cap: 2 * time.Minute}
	want := []time.Duration{1, 2, 4, 8, 16, 32, 64, 120, 120}
	for n, w := range want {
		if got := p.Ceiling(n); got != w*time.Second {
			t.Errorf("Ceiling(%d) = %v, want %v", n, got, w*time.Second)
		}
	}
	if got := p.Ceiling(10_000); got != 2*time.Minute {
		t.Errorf("Ceiling(10000) = %v, want cap", got)
	}
	p.Rand = func() float64 { return 0.5 }
	if got := p.Delay(3); got != 4*time.Second {
		t.Errorf("Delay(3) with r=0.5 = %v, want 4s", got)
	}
	p.Rand = nil
	for n := 0; n < 12; n++ {
		for i := 0; i < 100; i++ {
			if d := p.Delay(n); d < 0 || d > p.Ceiling(n) {
				t.Fatalf("Delay(%d) = %v outside [0, %v]", n, d, p.Ceiling(n))
			}
		}
	}
}
