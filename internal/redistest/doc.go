// Package redistest gives each test package its own real Redis.
//
// A test package calls Main from TestMain:
//
//	func TestMain(m *testing.M) { redistest.Main(m) }
//
// Main starts one redis-server (the `redis-server` binary on PATH) on a free
// loopback port with persistence off and 4096 databases, in a temporary
// directory, runs the tests, stops the server and removes the directory.
// Each call to New hands a test a database index nobody else in the package
// uses (and FLUSHDB's it first, and again when the test ends), so tests can
// run in parallel against one server without seeing each other's keys; asynq
// keys are per database too, so every test gets its own queues.
//
// Decisions worth knowing:
//
//   - One server per test binary, not per test: starting redis-server costs
//     tens of milliseconds, a database index costs nothing.
//   - Readiness is a PING loop with a deadline, and the answer must come from
//     the process we started (INFO server's process_id is checked), so a
//     stranger that grabbed the port is never mistaken for our server. If the
//     port is lost to a race, Main retries on a new port.
//   - On Linux the child gets SIGKILL when the test binary dies (Pdeathsig),
//     so a test that calls os.Exit or panics does not leak a redis-server.
//   - When no redis-server binary is installed, Main falls back to an
//     embedded github.com/alicebob/miniredis/v2 server, unless the
//     environment sets SANDBOXQ_REQUIRE_REDIS to a true value (CI does), in
//     which case Main prints why and exits 1. Kind reports which one runs.
//   - A Redis on 127.0.0.1:6379 is never used.
//
// NewCluster (3 primaries, 1 replica each, joined by `redis-cli --cluster
// create`) and NewSentinel (1 primary, 2 replicas, 3 `redis-server
// --sentinel`) start a whole topology for one test, from the same binaries,
// on free loopback ports, torn down by t.Cleanup. They return the REDIS_URL
// form the binaries accept, a go-redis client, every Node (address and pid,
// so a test can SIGKILL a primary), the current primary, and WaitHealthy,
// which after a kill means "failover finished". Timeouts are short (cluster
// node timeout and sentinel down-after 1 s) so that a failover takes a few
// seconds. Without the binaries they skip, or fail under
// SANDBOXQ_REQUIRE_REDIS; they never fall back to miniredis, which has
// neither cluster nor sentinel.
package redistest
