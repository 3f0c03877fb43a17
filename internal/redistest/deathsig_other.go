//go:build !linux

package redistest

import "os/exec"

// setDeathSignal is a no-op where the platform has no parent-death signal;
// Main still stops the server when the tests return.
func setDeathSignal(*exec.Cmd) {}
