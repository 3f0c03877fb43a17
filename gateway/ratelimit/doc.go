// Package ratelimit is the gateway rate limit shared by every worker: a
// gateway.Gate that takes a token from one GCRA budget in Redis
// (github.com/go-redis/redis_rate/v10) before each gateway call, and holds
// every worker's calls while a 429's Retry-After lasts.
//
// cmd/worker builds it from SANDBOXQ_GATEWAY_RATE; an embedder passes
// gateway.WithGate(g) with g from New to the gateway client its workers
// share.
//
// Decisions:
//   - One budget for the whole deployment: the gateway limits an API key,
//     not a process, so every worker spends from one Redis key (schema.RateBucketKey; the keys
//     and the pause script live in package schema).
//   - "N/s" alone means a burst of 1: calls are spread evenly, one every
//     1/N s. ",burst=B" lets B calls go back to back after a quiet time; in
//     any second at most N+B calls go out.
//   - A call waits at most MaxWait (default 2 s) for a token or for a pause
//     to end. Past that it fails with a *gateway.ThrottledError, which the
//     handlers treat like a busy project: the task is rescheduled after
//     the wait the limiter named plus jitter, and the attempt does not
//     count as a failure.
//   - A 429 with Retry-After sets one key whose lifetime is the pause;
//     every gateway call first reads that lifetime, so all workers stop
//     within one Redis round trip of the 429. Calls already in flight at
//     that moment still arrive. A 429 without Retry-After pauses nobody.
//   - Only gateway calls are gated; daemon calls go to the sandbox and
//     are not part of the gateway's budget.
//   - Waiting is measured (sandboxq_gateway_rate_wait_seconds by result,
//     sandboxq_gateway_pauses_total) and, under a traced task, shown as a
//     "gateway.rate_limit_wait" span when a call had to wait.
package ratelimit
