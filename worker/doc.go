// Package worker composes sandboxq for embedders: worker.New(cfg) wires an
// asynq server, sandboxq's task handlers and middleware (recover, logging,
// cancellation) and the retry policy; Run(ctx) processes tasks until ctx is
// done and then shuts down gracefully.
//
// The package reads no environment and owns no process-wide state: the
// binaries in cmd/ turn flags and environment into a Config, and a service
// that embeds the worker builds the Config itself (and may register its own
// task types on Mux before Run).
//
// Configuration follows one rule: every zero value is the default its
// field documents, and anything else outside its range is refused by New
// (and by Config.Validate, which needs no connections) with a *ConfigError
// naming the field, so a program can name its own setting instead
// (cmd/worker maps fields to environment variables). Concurrency is 1 to
// 10,000 (a larger value makes asynq spin), every queue of RequiredQueues
// must be served, cron specs are parsed before anything starts. New never
// panics on its input: a component that panics while being built
// (asynqmon does on a RootPath it cannot mount) becomes an error, and what
// New opened before it failed is closed again.
//
// Defaults differ from asynq's where asynq's do not fit sandbox work:
// asynq's processor polls its queues, and the worker turns that poll into
// a wait (wake.go): asynq's server gets the worker's Redis client wrapped
// so that, once every queue answered "empty", the next look first blocks
// on the queues' wake lists, where tasks.Client pushes a token for each
// task it enqueues. A task is picked up a round trip or two after it is
// enqueued and an idle worker costs Redis 10 to 15 round trips/s. Due
// retries and scheduled tasks are announced by the worker whose forwarder
// moves them to their queue; tasks of other producers are found within
// TaskCheckInterval (1 s). Due retries move to their queue
// every 2 s rather than every 5 s, MaxRetry comes from the task types (8)
// and the shutdown timeout is 30 s.
//
// HTTP (http.go). Every route of the listener, and Handler for embedders,
// sits behind one guard, because the producer API can run commands on the
// sandboxes and, with the local provider, on this host: the Host header
// must be a loopback name or in HTTPConfig.AllowedHosts (DNS rebinding;
// /healthz is exempt for probes by IP), state-changing requests must be
// same-origin or from HTTPConfig.AllowedOrigins (net/http's
// CrossOriginProtection; trusted origins also get their CORS preflight
// answered), and a POST/PUT/PATCH body must be JSON, which no form or
// no-cors fetch can send without a preflight. The guard sits in front of
// the dashboard's and the API's own checks rather than replacing them, so
// each package stays safe when mounted alone. The server has header, idle
// and body-read timeouts but no write timeout: event streams and long polls
// bound themselves, and a write timeout would cut them.
package worker
