// Package proc supervises the managed servers of the local provider: each
// one a real process group started with sh -c, given PORT, watched until it
// accepts connections (and passes its health check), restarted by policy,
// and stopped with SIGTERM then SIGKILL (computesdk-protocol.md §2.9, §6).
//
// # Lifecycle
//
//	installing (only with Install) → starting → running → ready
//	                 ↓                    exit ↓
//	              failed           restarting → starting … | failed | stopped
//
// running means the Start process is alive; ready means 127.0.0.1:PORT
// accepts a TCP connection and, with a HealthCheck, that a GET of its Path
// answered 2xx after Delay. Checks go on every Interval; a failing check
// after ready clears Healthy and counts ConsecutiveFailures but leaves the
// status ready (the protocol only says when ready is reached). Redirects are
// not followed: a 3xx is a failing check.
//
// Exits: policy never stops on exit 0 and fails otherwise; on-failure
// restarts non-zero exits; always restarts every exit. Each automatic
// restart goes through restarting for RestartDelay and increments
// RestartCount; when MaxRestarts (0 = unlimited) restarts were made the next
// exit that would restart is failed instead, even an exit 0 under always.
// A process killed by a signal reports 128+signal as its exit code (shell
// convention), so a server SIGKILLed by Stop shows 137. Install failure is
// failed with "install failed: exit N". Manual Restart does not count as a
// restart, and reruns Install only if it never succeeded.
//
// # Processes
//
// Commands run as /bin/sh -c in their own process group (Setpgid), in
// Config.Dir, with stdin from /dev/null. The environment is not inherited:
// it is PATH=DefaultPath and HOME=Dir, the host's locale and time zone
// (HostLocale), then Config.Env (which may override them), then PORT. The
// group dies with this process: its leader gets the parent-death signal
// (StartLocked keeps the creating OS thread alive while the process runs,
// since Linux sends the signal when that thread exits), and the group is
// registered with Config.Guard (guard.go), which SIGKILLs it when this
// process dies without a Stop. PID is the group leader, which is the real server when
// sh execs a simple command. When the Start process exits on its own, any
// process it left in its group is SIGKILLed at once, so an orphan never
// keeps the port from a restart. Stop sends SIGTERM to the group, waits
// StopTimeout for the whole group to exit, then SIGKILLs it; it returns once
// /proc shows no live process in the group. Zombies count as gone: an orphan
// waits for init to reap it, which in a container may never happen.
//
// # Ports
//
// The port is chosen before the process starts and exported as PORT; host is
// always 127.0.0.1. A port is free if 127.0.0.1:port can be bound and no
// other Server of this process holds it (reservations are process-wide, so
// concurrent Starts never share a port). It is released when a lifecycle ends
// and reserved again by Restart, which prefers the previous port.
//
// # Notifications
//
// onChange receives a snapshot whenever Status, Port, ExitCode or Healthy
// changes, in order and never concurrently. Delivery happens on the
// goroutine that made the change, without the Server's lock held, unless
// another delivery is in progress, in which case that one delivers it after
// its own; this keeps the order across the goroutines of a Server (the
// lifecycle, the health check, callers of Stop and Restart). Because the
// lifecycle waits for its goroutines, onChange must not call Stop or
// Restart. Other fields (LastCheck, ConsecutiveFailures, PID, ...) are read
// with State.
//
// # Logs
//
// stdout and stderr are read from pipes into rings of LogLimit bytes each;
// the combined view is a third ring of the same size fed in arrival order,
// one pipe read at a time. Output of Install and of every restart goes to
// the same rings. A ring cut inside a UTF-8 sequence drops the orphaned
// continuation bytes when read.
package proc
