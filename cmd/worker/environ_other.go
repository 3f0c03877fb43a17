//go:build !linux

package main

// protectEnviron does nothing outside Linux: there is no /proc/<pid>/environ
// to protect, and the local provider's doc says what it does not isolate.
func protectEnviron() error { return nil }
