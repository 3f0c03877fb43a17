package redisserver

import (
	"os/exec"
	"syscall"
)

// setDeathSignal makes the kernel kill redis-server when the process that
// started it dies, however it dies.
func setDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
