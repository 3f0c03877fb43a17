package testutil

import (
	"os"
	"os/exec"
	"testing"
)

// Chromium finds headless Chromium for a browser test: SANDBOXQ_CHROMIUM,
// else the usual names on PATH. Without it the test is skipped, except
// under CI (CI set), where it fails.
func Chromium(tb testing.TB) string {
	tb.Helper()
	if p := os.Getenv("SANDBOXQ_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		tb.Fatal("chromium is not installed; CI must install it (apt-get install -y chromium)")
	}
	tb.Skip("chromium is not installed (apt-get install -y chromium); under CI this is a failure")
	return ""
}
