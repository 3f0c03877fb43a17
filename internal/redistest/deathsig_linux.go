package redistest

import (
	"os/exec"
	"syscall"
)

// setDeathSignal makes the kernel kill redis-server when the test binary
// dies, however it dies.
func setDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
