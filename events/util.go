package events

import (
	"encoding/json"
	"math/rand/v2"
	"time"

	"github.com/sandboxq/sandboxq/internal/backoff"
)

// jitter returns d spread uniformly by ±frac.
func jitter(d time.Duration, frac float64) time.Duration {
	if d <= 0 {
		return d
	}
	return time.Duration(float64(d) * (1 - frac + 2*frac*rand.Float64()))
}

// backoffDelay is the reconnect delay of attempt n (0-based): full jitter
// under an exponential ceiling from min to max, but never below min/2, so a
// peer that accepts and drops at once is not hammered.
func backoffDelay(min, max time.Duration, n int) time.Duration {
	d := backoff.Policy{Base: min, Cap: max}.Delay(n)
	if d < min/2 {
		d = min / 2
	}
	return d
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }
