package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sandboxq/sandboxq/internal/testutil"
)

func TestRunServesAndPrintsHowToReachIt(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	var stdout, stderr testutil.SyncBuffer
	done := make(chan struct{})
	var runErr error
	go func() {
		defer close(done)
		runErr = run(ctx, []string{"-addr", "127.0.0.1:0", "-root", t.TempDir()}, &stdout, &stderr)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})

	re := regexp.MustCompile(`(?s)gateway URL: (\S+)\n\s+API key:\s+(\S+)\n.*curl .*find-or-create`)
	var m []string
	deadline := time.Now().Add(20 * time.Second)
	for m = re.FindStringSubmatch(stdout.String()); m == nil; m = re.FindStringSubmatch(stdout.String()) {
		select {
		case <-done:
			t.Fatalf("run returned early: %v\nstderr: %s", runErr, stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no URL and key printed; stdout:\n%s", stdout.String())
		}
	}
	url, key := m[1], m[2]
	if !strings.HasPrefix(key, "local_") {
		t.Errorf("key %q", key)
	}

	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url+"/v1/sandboxes/find-or-create",
		strings.NewReader(`{"namespace":"default","name":"demo"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-ComputeSDK-API-Key", key)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	var env struct {
		Success bool `json:"success"`
		Data    struct {
			SandboxID string `json:"sandboxId"`
			Name      string `json:"name"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &env); err != nil || res.StatusCode != 200 || !env.Success || env.Data.SandboxID == "" || env.Data.Name != "demo" {
		t.Fatalf("find-or-create: %d %s (%v)", res.StatusCode, body, err)
	}
	if strings.Contains(stderr.String(), key) {
		t.Error("the API key was logged")
	}

	cancel()
	select {
	case <-done:
		if runErr != nil {
			t.Errorf("run: %v", runErr)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	if _, err := http.Get(url + "/v1/sandboxes"); err == nil {
		t.Error("still serving after run returned")
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"-log-level", "loud"},
		{"extra"},
		{"-no-such-flag"},
	} {
		var out bytes.Buffer
		err := run(t.Context(), args, &out, &out)
		if !errors.As(err, new(usageError)) {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}
	var out bytes.Buffer
	if err := run(t.Context(), []string{"-h"}, &out, &out); !errors.Is(err, flag.ErrHelp) || !strings.Contains(out.String(), "Examples:") {
		t.Errorf("-h: %v\n%s", err, out.String())
	}
	// A non-loopback address is refused by the library.
	if err := run(t.Context(), []string{"-addr", "0.0.0.0:0"}, &out, &out); err == nil || !strings.Contains(err.Error(), "non-loopback") {
		t.Errorf("non-loopback: %v", err)
	}
}
