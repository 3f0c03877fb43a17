// Package lease implements exclusive, expiring ownership of a name in Redis.
//
// A lease is a Redis string key whose value is the owner's token. It is taken
// with SET NX PX, renewed and released only by its owner through Lua scripts
// that compare the stored token first (compare-and-expire, compare-and-delete),
// so an owner that lost its lease to expiry can never extend or delete the
// lease of the next owner.
//
// sandboxq uses leases in two places: the per-project mutation lease of the
// task handlers (owner = task id, DESIGN.md §4.2) and, later, watcher
// ownership. Callers choose the key; keys that belong to a project carry the
// project in a Redis Cluster hash tag ({namespace/name}) so every key of one
// project lands on one slot.
//
// Held keeps a lease alive: it renews at a third of the TTL in a goroutine it
// owns and reports loss on a channel. A renewal that fails because of a
// transient Redis error is retried until the TTL would have run out; then the
// lease is reported lost, because another process may take it from then on.
package lease
