// Package dashboard is sandboxq's operations HTTP handler: Asynqmon mounted
// under a path, the sandbox registry as a page and a JSON API, Prometheus
// metrics and health checks, all behind one authentication rule.
//
// # Paths
//
//	RootPath+"/"      Asynqmon (default /monitoring/); deep links and reloads
//	                  work because Asynqmon serves its single-page app for
//	                  every path it does not know
//	/sandboxes        the registry as an HTML table (html/template) with a
//	                  search box (?q=); a few lines of script swap the rows
//	                  every Config.Refresh (?fragment=rows renders only them,
//	                  from the same template), so what is typed survives
//	/sandboxes/{namespace}/{name}
//	                  the project page: sandbox, servers with their recent
//	                  output (Config.ServerLogs), and one timeline of the
//	                  project's tasks (Config.Tasks, its task index) and events
//	/api/sandboxes/{namespace}/{name}/stream
//	                  Server-Sent Events of the project page: "view" events
//	                  carrying its sections rendered again when they change
//	/api/sandboxes    the registry as JSON: ?namespace=&status=&cursor=&limit=,
//	                  {"sandboxes": [...], "next_cursor": "..."}
//	/metrics          Prometheus: Config.Metrics, plus asynq queue series
//	                  (QueueCollector) and Go/process series
//	/healthz          200 while the process serves HTTP
//	/readyz           200 when Redis answers PING and Config.Ready passes
//	/                 redirects to /sandboxes
//
// The handler serves these absolute paths; an embedder mounts it at the
// root of a server, or routes these paths to it (RootPath is the path the
// browser sees, since Asynqmon writes it into its pages).
//
// # Authentication
//
// With Config.Auth set, every path but /healthz needs HTTP basic
// credentials or "Authorization: Bearer <token>". Both are compared in
// constant time (SHA-256 digests, so the length does not leak either).
// /healthz stays open so that liveness probes need no secret; it reveals
// nothing but that the process answers. /readyz and /metrics are behind
// auth, like everything else that reads Redis.
//
// Without credentials the dashboard must not be reachable from other hosts:
// New runs CheckListen on Config.ListenAddr (a non-loopback address
// without credentials is a start-up error), and, for embedders that serve
// the handler on listeners of their own, each request is checked too: one
// that arrived on a non-loopback local address is refused with 403.
//
// Mutating requests must be same-origin (http.CrossOriginProtection), since
// a browser holding basic credentials would otherwise let any web page post
// to the dashboard.
//
// # The project page
//
// The page is rendered on the server from one template; its sections
// ("head", "servers", "timeline") are named templates, and the page's
// stream sends them rendered again, so the browser only swaps HTML that
// html/template escaped and there is no second renderer in JavaScript.
// The stream is woken by the project's event channel through the process's
// shared subscription (internal/eventhub, also used by the API) and re-reads
// every 2 s, since task changes publish nothing; it sends a view only when
// its sections changed, asks the daemon for server output only after a new
// event, and ends after 10 minutes (the browser reconnects) or on
// EndStreams, which the worker calls when its HTTP server shuts down. The
// newest events are read with one XREVRANGE and decoded by
// schema.DecodeEntry; new ones by schema.ReadEvents from the last id seen.
// Authentication is the dashboard's (a browser sends its basic
// credentials with EventSource), never an API token.
//
// # Read-only
//
// ReadOnly (the default) makes Asynqmon view-only. Asynqmon refuses its
// own mutating API calls in that mode; the dashboard also refuses every
// method but GET and HEAD under RootPath, so nothing Asynqmon might add
// slips through.
//
// # What Asynqmon shows
//
// Asynqmon is given the caller's Redis client (not connection options), so
// the dashboard opens no connections of its own and Close leaves Redis
// alone. Payloads and results go through FormatPayload and FormatResult:
// decompressed (gzip payloads are recognised by their magic bytes, since
// Asynqmon passes no task headers), pretty-printed, and redacted by Redact
// on the JSON tree: file contents become sizes, env maps become their
// names (server, command and sandbox envs, env:update's set, at any depth,
// so workflow steps are covered), and values of credential-named keys
// become "[redacted]". sandbox:ensure metadata is shown (it is plain data
// by contract), minus credential-named keys. A payload that is not JSON is
// shown as its size only.
//
// # Metrics
//
// The worker's series are owned where they are measured: task duration,
// outcome and project-busy reschedules by handlers.Metrics, gateway
// requests by gateway.Metrics, watchers, events and lease losses by
// events.Metrics. worker.New registers each once on the registry it passes
// as Config.Metrics. QueueCollector reads queue state through asynq.Inspector
// at scrape time under the names of asynq's x/metrics exporter, so
// Asynqmon's charts (Config.PrometheusAddr) work with them.
package dashboard
