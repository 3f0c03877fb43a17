// Package e2e holds end-to-end tests of the sandboxq binaries: it builds
// cmd/worker and cmd/enqueue, runs them as separate processes against a real
// redis-server and the local provider, and checks what a user would see —
// the README quick start, per-project exclusion across worker processes, and
// that SIGTERM loses no task. It has no non-test code.
package e2e
