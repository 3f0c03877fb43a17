package ratelimit

// The Redis keys of the shared gateway rate limit. They live here, and only
// here, until every sandboxq key moves to the schema owner.
const (
	// BucketKey is the GCRA state of the gateway budget, one key shared by
	// every worker. redis_rate stores it under its own "rate:" prefix, so
	// the key in Redis is "rate:sandboxq:gateway:rate".
	BucketKey = "sandboxq:gateway:rate"
	// PauseKey exists while every worker must hold its gateway calls: it is
	// set when the gateway answered 429 with a Retry-After, with that as its
	// lifetime (PX), and its remaining lifetime (PTTL) is the pause left.
	// Redis's clock alone decides, so workers' clocks need not agree.
	PauseKey = "sandboxq:gateway:pause"
)
