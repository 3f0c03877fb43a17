// Package local is the embedded local provider: one loopback HTTP server
// that is a ComputeSDK gateway and, under each sandbox's url, that
// sandbox's daemon (computesdk-protocol.md §1–§3). Sandboxes are
// directories on this host; managed servers and commands are real
// processes. sandboxq's tests use it as their gateway peer, the worker's
// dev mode runs it in-process, and cmd/localprovider serves it on its own.
//
// # URL layout
//
//	/v1/sandboxes, /v1/sandbox           POST create
//	…/{id}                               GET, DELETE
//	…/{id}/extend                        POST
//	…/find-or-create, …/find             POST
//	/s/{sandboxId}/…                     the daemon of one sandbox (the record's url)
//	  health ready info                  GET
//	  servers[/{slug}[/stop|restart|status|logs]]
//	  files[/batch|/{path}]              {path} in any of the three client encodings
//	  run/command, execute               POST
//	  env?file=                          GET POST DELETE HEAD
//	  signals/{start,stop,status,port,port/{port}/{type},error,server-ready}
//	  ws?token=&protocol=json|binary
//	EventsAddr (TCP)                     events pub/sub line protocol
//
// Both gateway path styles (singular, as in the original integration, and
// plural) are served. Every gateway request needs X-ComputeSDK-API-Key
// (compared in constant time); every daemon request needs the sandbox's
// token as "Authorization: Bearer" or ?token=. Routing reads the escaped
// path itself and never cleans it, so /files//tmp/a.txt and
// /files/%2Ftmp%2Fa.txt reach the file handler intact.
//
// # Faithful
//
//   - Envelopes exactly as the clients read them: gateway
//     {"success":true,"data":…} with a JSON body on every 2xx (DELETE and
//     extend answer {"success":true}); files, run, signals and info
//     {message,data}; servers and env {status:"success",message,data};
//     /health and /ready bare. DELETE /files is 204 as in the protocol.
//   - (namespace, name) identifies at most one sandbox, also under
//     concurrent find-or-create (the provider lock covers lookup and
//     creation); namespace defaults to "default".
//   - Server lifecycle (internal/proc): install → starting → running →
//     ready once 127.0.0.1:PORT accepts (and the health check passes),
//     restart policies, stop = SIGTERM then SIGKILL after stop_timeout,
//     durations in ns on output, env_file relative to path with
//     environment overriding it. ServerInfo.url is http://127.0.0.1:<port>
//     and reaches the process; it is set while the server is running or
//     ready.
//   - Binary WebSocket protocol: client frames decoded with wsbin; signal
//     messages go out as binary KV frames, any type the JS client would
//     not KV-decode as a JSON text frame (§3.3 quirks 1–2). JSON text
//     frames from the client are understood in both modes.
//
// # Simplified
//
//   - No terminals, watchers, streaming or background commands, overlays,
//     child sandboxes or session tokens; background and stream commands
//     get a 400 that says so.
//   - A sandbox's filesystem root is its directory: absolute and relative
//     paths of the file, env and server APIs and of cwd both map under it
//     ("/tmp/a" is <dir>/tmp/a). Commands and servers run with it (or their
//     path) as cwd and HOME, but they are ordinary processes of this host:
//     an absolute path inside a command is a host path. The JS client's
//     filesystem.exists and mkdir send such commands, so give them
//     relative paths. Nothing is isolated beyond the file API.
//   - Commands and servers do not inherit the provider's environment
//     (which may hold the embedding process's credentials): they get PATH
//     (Config.Path), HOME, TMPDIR (the sandbox's /tmp, created on first
//     use), the host's LANG, LANGUAGE, LC_* and TZ, PORT (servers), the
//     sandbox's create-time envs and their own env. They still run as this
//     process's user and are its children: on Linux a process of the same
//     user can read /proc/<pid>/environ of the process that embeds the
//     provider (the worker's, in cmd/worker -dev). That is why the provider
//     is for development and not an isolation boundary.
//   - Processes die with the provider, however it ends: every command and
//     server is its own process group, started with the parent-death
//     signal (SIGKILL) from a goroutine locked to its OS thread (the signal
//     follows the creating thread, not the process), and registered with a
//     small guard process that SIGKILLs every registered group when the
//     provider's end of its pipe closes, so children of a group leader
//     die too (proc.Guard, owned by the Provider).
//   - A foreground /run/command runs in its own process group, which is
//     SIGKILLed at timeout_ms (exit code 124, status failed, a note on
//     stderr), when the client goes away, when the sandbox is destroyed,
//     and as soon as the shell exits: it leaves nothing behind. Long-lived
//     processes are servers.
//   - CreateOptions.timeout is accepted but not enforced and extend is a
//     no-op; templates and providers are ignored. A create that names the
//     sandbox behaves as find-or-create. Inline servers of a create start
//     as the sandbox is created; one that cannot start is logged and left
//     out.
//   - status "creating" is never returned: creation is a mkdir.
//
// # What the official client showed
//
// The conformance test (conformance_test.go) drives this provider with the
// official JavaScript client, npm computesdk@2.5.4, through
// compute.setConfig({gatewayUrl, …}) and the Sandbox it returns. Where the
// client and computesdk-protocol.md differ, the client won:
//
//   - compute.setConfig checks the provider name against its own list and
//     insists on that provider's credentials, which it then sends as
//     X-Provider and, e.g., X-E2B-API-Key (§1.2). The provider accepts and
//     ignores both; the test configures "e2b" with a dummy key.
//   - Only the plural gateway paths (/v1/sandboxes…) are used by 2.5.4;
//     the singular ones (gw-v0) are served for the original integration and
//     sandboxq's own client.
//   - The daemon WebSocket defaults to protocol=binary. On Node 20 (no
//     global WebSocket) the client still reads the global WebSocket.OPEN
//     even when a WebSocket class is passed in the config, so the test sets
//     globalThis.WebSocket; and its binary decoder reads buf.buffer without
//     byteOffset (§3.3 quirk 3), so the test's ws class asks for
//     ArrayBuffers (binaryType "arraybuffer"). Signals then arrive as
//     binary KV frames and decode correctly.
//   - SignalService drops "type" from port signals; only signal, port, url
//     and message reach handlers.
//   - readFile uses the v2 path encoding (/files//app/a.txt, §2.5), which
//     http.ServeMux would clean and redirect; routing reads the escaped path.
//   - Sandbox.getUrl derives a preview host from the sandbox URL's first
//     DNS label ("<subdomain>-<port>.preview…", §6); for a loopback sandbox
//     URL that is meaningless. Use ServerInfo.url, which is a loopback URL
//     that reaches the server.
//   - filesystem.exists and filesystem.mkdir run shell commands (test -e,
//     mkdir -p) rather than file endpoints; commands here run on the host,
//     so they see host paths. file.exists (HEAD /files/…) is confined.
//   - runCommand with a timeout option switches to background:true plus a
//     terminal wait, which this provider answers with a clear 400.
//   - Every 2xx is parsed as JSON, DELETE /v1/sandboxes/{id} included
//     (§1.4), and a 404 from the gateway reads as "not found" without its
//     body.
//
// # Decisions
//
//   - find miss: 200 {"success":true,"data":null}; unknown id on GET,
//     DELETE or extend: 404 {"success":false,"error":"not found"}.
//   - Signals are delivered only while the signal service is started
//     (POST /signals/start, as the JS client does after opening the
//     socket) and only to sockets subscribed to "signals". A server
//     becoming ready emits port{type:open} then server-ready; its process
//     ending after that emits port{type:close}; failing emits error.
//   - Events pub/sub (protocol §4.2) listens on a loopback port of its own
//     (Config.EventsAddr, Provider.EventsAddr). The access token of a
//     sandbox is its daemon token. It emits server.status_changed
//     {serverName, status, url?, error?} on every status (or url) change
//     of a managed server, with the timestamp of the change (the server's
//     updated_at, in ms), and sandbox.status_changed {status:"destroyed"}
//     when the sandbox is destroyed, after which its subscribers are
//     disconnected. There is no replay; a subscriber more than 256 lines
//     behind is disconnected. Dropped WebSockets (Faults) do not affect it.
//   - The default WebSocket protocol, when the query has none, is json
//     (every client sends one).
//   - Paths: resolvePath rejects NUL, more than 4096 bytes, a ".." above
//     the root, and any symbolic link whose resolution steps outside the
//     root, dangling or not (absolute links into the root are allowed);
//     the result has no links in its existing part. Operations then go
//     through an os.Root of the sandbox directory, which re-checks at open
//     time. Deleting a link removes the link. Writes go to a temporary
//     file renamed over the target, under a per-path lock, so readers never
//     see a torn file. A batch processes the last operation per path in
//     sorted order; deleting a missing path in a batch succeeds (retries
//     are harmless), DELETE /files of a missing path is 404.
//   - GET /env of a missing file answers an empty set of variables; HEAD
//     says whether it exists. Writes keep comments, order and unrelated
//     lines; values are written bare, 'single-' or "double-quoted" as
//     needed so that dotenv readers get them back unchanged.
//   - Fault injection (Faults, SetFaults at run time) applies before
//     authentication, like a failing proxy would. GET /health of a daemon
//     is exempt from injected errors: clients poll it a bounded number of
//     times right after create (the JS SDK 30 times) to decide whether the
//     sandbox exists at all, so a random failure there would turn a
//     retryable fault into a failed create instead of exercising the
//     caller's retries. Latency applies to it like to everything else.
//   - Close stops everything it started and waits for it: in-flight
//     requests (commands are killed), every server process, every
//     WebSocket goroutine; then it removes a temporary Root. A Root given
//     in Config is left in place.
//   - Logs (debug level: one line per request) carry method, escaped path
//     and sandbox id, never the query, the API key or a token.
package local
