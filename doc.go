// Package sandboxq is the shared vocabulary of the module: the words that
// the gateway client (package gateway), the local provider (gateway/local),
// the producer side (tasks) and the watchers (events) all speak.
//
// It holds server statuses and their order, restart policies, the health
// check settings of a server, and the identity of a project (namespace,
// name). It imports nothing of sandboxq, only the standard library, so any
// package may import it without pulling in a client or a server: cmd/enqueue
// links this package, tasks and schema, never the gateway client.
//
// Decisions:
//
//   - The server status constants are untyped string constants, so the wire
//     structs of the gateway protocol (whose Status fields are plain strings)
//     take them without conversion. ServerStatus adds the predicates that
//     several packages used to write out case by case (Known, Live,
//     Terminal) and the order a healthy server goes through (Rank).
//   - Project validation returns a *ValidationError naming the field, the
//     same type every payload check of package tasks returns (tasks.
//     ValidationError is an alias of it).
//   - How a project becomes part of a Redis key (its hash tag) is the Redis
//     schema's business, in package schema, not this one.
package sandboxq
