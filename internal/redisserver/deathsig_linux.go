package redisserver

import (
	"os/exec"
	"syscall"
)

// SetDeathSignal makes the kernel kill redis-server when the process that
// started it dies, however it dies.
func SetDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
