// Package e2e holds end-to-end tests of the sandboxq binaries: it builds
// cmd/worker and cmd/enqueue, runs them as separate processes against a real
// redis-server and the local provider, and checks what a user would see —
// the README quick start, per-project exclusion across worker processes, and
// that SIGTERM loses no task.
//
// The topology tests run the same behaviour on standalone Redis, a Redis
// Cluster and a Sentinel set-up started by internal/redistest
// (TestTopologies, including every Lua script of the module on each
// primary of the cluster), measure a primary's SIGKILL under load
// (TestFailover), and benchmark files:write throughput per topology and
// number of worker processes (BenchmarkTopologyFilesWrite). They live here,
// not in a package of their own, to reuse the worker-process helpers.
// It has no non-test code.
package e2e
