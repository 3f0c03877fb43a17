// Package redisserver starts a private redis-server for one process: on a
// free loopback port (never 6379), with persistence off, in a temporary
// directory that Stop removes.
//
// It is shared by internal/redistest (one server per test binary) and
// cmd/bench (one server per benchmark run), so both launch Redis the same
// way.
//
// Decisions worth knowing:
//
//   - Readiness is a PING loop with a deadline, and the answer must come from
//     the process we started (INFO server's process_id is checked), so a
//     stranger that grabbed the port is never mistaken for our server. If the
//     port is lost to a race between the probe and redis-server's bind, Start
//     retries on a new port.
//   - On Linux the child gets SIGKILL when the process that started it dies
//     (Pdeathsig), so a crash does not leak a redis-server.
package redisserver
