//go:build !linux

package redisserver

import "os/exec"

// SetDeathSignal is a no-op where the platform has no parent-death signal;
// callers still stop the server with Stop.
func SetDeathSignal(*exec.Cmd) {}
