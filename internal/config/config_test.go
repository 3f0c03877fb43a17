package config

import (
	"testing"
	"time"
)

func TestFillDefaultsAndNegative(t *testing.T) {
	a, b, c := time.Duration(0), 5*time.Second, time.Duration(0)
	ds := []Duration{{"A", &a, time.Second}, {"B", &b, time.Minute}, {"C", &c, time.Hour}}
	FillDefaults(ds)
	if a != time.Second || b != 5*time.Second || c != time.Hour {
		t.Fatalf("after FillDefaults A, B, C = %v, %v, %v; want 1s, 5s (set), 1h", a, b, c)
	}
	if d, bad := Negative(ds); bad {
		t.Fatalf("Negative found %s in %v %v %v", d.Name, a, b, c)
	}
	b, c = -time.Second, -time.Minute
	d, bad := Negative(ds)
	if !bad || d.Name != "B" || *d.Value != -time.Second {
		t.Fatalf("Negative = %+v, %v; want B (-1s), true", d, bad)
	}
	FillDefaults(ds)
	if b != -time.Second {
		t.Fatalf("FillDefaults changed a negative value to %v", b)
	}
}
