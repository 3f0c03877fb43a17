package local

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestConformanceOfficialClient drives the provider with the official
// JavaScript client (computesdk@2.5.4, vendored in
// testdata/conformance/node_modules) through testdata/conformance/conformance.mjs.
// It needs node on PATH and is skipped without it, unless
// SANDBOXQ_REQUIRE_NODE=1 (as in CI) makes that a failure.
func TestConformanceOfficialClient(t *testing.T) {
	t.Parallel()
	node, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("SANDBOXQ_REQUIRE_NODE") == "1" {
			t.Fatal("node not found and SANDBOXQ_REQUIRE_NODE=1")
		}
		t.Skip("node not found on PATH")
	}
	dir, err := filepath.Abs(filepath.Join("testdata", "conformance"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "computesdk")); err != nil {
		t.Fatalf("vendored client missing: %v", err)
	}
	p := startProvider(t, Config{})

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "conformance.mjs")
	cmd.Dir = dir
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + t.TempDir(),
		"GATEWAY_URL=" + p.URL(),
		"API_KEY=" + p.APIKey().Reveal(),
	}
	out, err := cmd.CombinedOutput()
	t.Logf("conformance.mjs:\n%s", out)
	if err != nil {
		t.Fatalf("conformance script: %v", err)
	}
	if n := len(p.Sandboxes()); n != 0 {
		t.Errorf("%d sandboxes left after the script destroyed its own", n)
	}
}
