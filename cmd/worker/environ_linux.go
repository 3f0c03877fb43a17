package main

import "syscall"

// protectEnviron marks this process not dumpable (prctl PR_SET_DUMPABLE 0)
// before the local provider starts its sandbox processes. Those run as this
// process's user, and Linux lets a process of the same user read
// /proc/<pid>/environ, and attach a debugger, only while the target is
// dumpable; so a sandbox command can no longer read the worker's
// environment (Redis password, API tokens, dashboard password) through
// /proc/$PPID/environ. It does not stop root or a holder of
// CAP_SYS_PTRACE, and it turns off core dumps and debugger attachment for
// this -dev process. Children are dumpable again after exec.
func protectEnviron() error {
	_, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_DUMPABLE, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}
