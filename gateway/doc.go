// Package gateway is the Go client for the ComputeSDK gateway REST API and
// for the sandbox daemon API reached through it (computesdk-protocol.md
// §1–§3).
//
// A Client speaks to the gateway: FindOrCreate, Find, Create, Get, Destroy
// and Extend. Client.Daemon(sb) returns a Daemon for the sandbox the
// gateway handed out (its url and bearer token); NewDaemon builds one
// without a gateway. A Daemon manages servers, files, commands, env files,
// signals, and dials the daemon WebSocket (DialWS).
//
// Decisions that are not obvious from the signatures:
//
//   - Few, bounded retries. A failed mutation returns at once; sandboxq
//     retries whole tasks. Idempotent reads — Find, FindOrCreate
//     (idempotent by namespace and name), Daemon.GetServer, ListServers
//     and Health — are sent up to 2 more times on a transport error, 502,
//     503 or 504, after jittered waits (75–150 ms, then 150–300 ms), and
//     never later than 2 s after the first request (WithReadRetry; DESIGN
//     §5: under 30 % 503s one failed read used to cost a whole attempt).
//     429, 500 and the caller's cancellation are never retried here.
//     Find and FindOrCreate also re-POST while the gateway answers status
//     "creating" (500 ms growing ×1.5 to 2 s, for at most 60 s by default;
//     WithCreatingPoll) and then fail with ErrStillCreating.
//   - Errors are classified for the caller. Non-2xx answers are *APIError
//     (status, server message, request id, Retry-After); errors.Is matches
//     ErrNotFound, ErrUnauthorized and ErrForbidden. IsRetryable says
//     whether a retry can help: 408, 425, 429, 5xx, ErrStillCreating, the
//     per-request timeout (ErrRequestTimeout) and network failures are
//     retryable; the caller's own cancellation or deadline, bad input and
//     an undecodable 2xx body are not. When the caller's context ends,
//     the error wraps ctx.Err(), never the transport error it caused.
//   - Not found. Find reports a miss as (nil, nil), whether the gateway
//     says so with a 404 or with 200 and null data or success false.
//     Get, Destroy and GetServer return an error matching ErrNotFound; a
//     destroy of something already gone is the caller's call to make.
//   - One HTTP client. Clients and Daemons built without WithHTTPClient
//     share one keep-alive pool (64 idle connections per host). It does not
//     follow redirects, so the API key header never travels to another
//     host; a 3xx comes back as an *APIError. The per-request timeout
//     (default 30 s) is a context deadline, not http.Client.Timeout, so it
//     can be told apart from the caller's. RunCommand raises it to the
//     command's TimeoutMS plus 10 s so the daemon's limit fires first.
//   - Paths. The base URL may carry a prefix (http://host/prefix); every
//     path is joined to it relative and escaped. Sandbox ids and server
//     slugs are one escaped segment ("." and ".." are refused). File paths
//     use the current reference encoding: segments escaped, a leading slash
//     kept, so "/tmp/a b" becomes /files//tmp/a%20b; the path is cleaned
//     first and a relative path that climbs out (../x) is refused, because
//     URL handling on the way would resolve it.
//   - Envelopes. Gateway bodies are {success, data, error}. Daemon bodies
//     are {message, data} (files, commands, signals), {status, message,
//     data} (servers, env) or bare (/health); both wrapped forms are read
//     through data. A 207 from /files/batch is a success: per-path
//     failures are in the results.
//   - File bodies stream. WriteFile and BatchFiles encode the file content
//     into the request body while it is sent (with its exact
//     Content-Length; the bytes are json.Marshal's), so a file write holds
//     no escaped copy of the content.
//   - Credentials. The API key and tokens are secret.Secret values revealed
//     only into headers and the WebSocket query. Errors and logs carry
//     sanitized URLs (no userinfo, token query values redacted), and a
//     server message that echoes a credential has it cut out. Client and
//     Daemon print and log without them.
//   - Observability. WithObserver receives every HTTP request's operation
//     ("find_or_create", "find", "create", "get", "destroy", "extend",
//     "daemon.health", "daemon.start_server", "daemon.dial_ws", …), status
//     (0 on a transport error) and duration. Metrics (NewMetrics, given
//     with WithMetrics or Client.Measured) are the Prometheus series of the
//     same: request duration by operation and status class. Requests are
//     logged at debug level to the logger from WithLogger (default:
//     discard).
//   - Tracing. WithTracing makes every HTTP call made under a span a client
//     span named after its operation ("gateway.find_or_create",
//     "daemon.start_server") and sends the W3C context; URLs lose query and
//     userinfo before the span sees them, and no header is recorded. Calls
//     outside a span (the watchers' polls) are not traced.
//   - Shared rate limit. WithGate puts a Gate before every gateway call (not
//     daemon calls): it may hold or refuse the call (ErrThrottled), and it is
//     told of every 429 with a Retry-After, so that a limit shared by many
//     processes (gateway/ratelimit) pauses them all.
package gateway
