// Package backoff computes exponential backoff delays with full jitter.
//
// Full jitter (a uniformly random delay between 0 and the exponential
// ceiling) spreads retries of many tasks that failed together, which matters
// when a gateway outage fails hundreds of tasks at once. The ceiling doubles
// per attempt from Base and stops at Cap.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Policy is an exponential backoff with full jitter.
type Policy struct {
	Base   time.Duration // ceiling of the first retry
	Factor float64       // growth per attempt; 2 if zero
	Cap    time.Duration // largest ceiling
	// Rand returns a value in [0, 1); math/rand/v2 if nil. Tests set it.
	Rand func() float64
}

// Ceiling returns the largest delay for retry attempt n (0-based).
func (p Policy) Ceiling(n int) time.Duration {
	factor := p.Factor
	if factor <= 0 {
		factor = 2
	}
	d := float64(p.Base)
	for i := 0; i < n; i++ {
		d *= factor
		if d >= float64(p.Cap) {
			return p.Cap
		}
	}
	if d > float64(p.Cap) {
		return p.Cap
	}
	return time.Duration(d)
}

// Delay returns a random delay in [0, Ceiling(n)].
func (p Policy) Delay(n int) time.Duration {
	r := p.Rand
	if r == nil {
		r = rand.Float64
	}
	return time.Duration(r() * float64(p.Ceiling(n)))
}
