package schema

import "github.com/redis/go-redis/v9"

// Script describes one Lua script of the schema, so a test (or an operator
// preparing a Redis Cluster) can load and run every script sandboxq uses.
type Script struct {
	// Name is the Go name of the script (or of the function that runs it).
	Name string
	// Script is the script itself.
	Script *redis.Script
	// Keys says what KEYS the script takes. Every key of one call shares a
	// project's hash tag (or is a single key), so each call runs on one
	// cluster slot.
	Keys string
}

// AllScripts lists every Lua script sandboxq runs. No other package holds a
// script.
func AllScripts() []Script {
	return []Script{
		{"CompareAndSet", casScript, "one string key (DedupKey or IdempotencyKey)"},
		{"AcquireLease", leaseAcquire, "LeaseKey; or WatcherKey and RegistryKey of one project"},
		{"AcquireUnlessCancelled", leaseAcquireTask, "LeaseKey, ProjectCancelKey of one project"},
		{"RenewLease", leaseRenew, "LeaseKey or WatcherKey"},
		{"ReleaseLease", leaseRelease, "LeaseKey; or WatcherKey and RegistryKey of one project"},
		{"RegistryUpsert", RegistryUpsert, "RegistryKey, EventsKey of one project"},
		{"RegistryServer", RegistryServer, "RegistryKey, EventsKey of one project"},
		{"RegistrySandbox", RegistrySandbox, "RegistryKey, EventsKey of one project"},
		{"RegistryTouch", RegistryTouch, "RegistryKey"},
		{"RegistryRecheck", RegistryRecheck, "RegistryKey"},
		{"AdvanceSlot", AdvanceSlot, "SlotKey"},
		{"FinishSlot", FinishSlot, "SlotKey"},
		{"RatePause", RatePause, "RatePauseKey"},
		{"IndexTask", IndexTaskScript, "TasksKey, TaskInfoKey of one project"},
		{"RecordAttempt", RecordAttemptScript, "TasksKey, TaskInfoKey of one project"},
	}
}
