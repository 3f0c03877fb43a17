package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/sandboxq/sandboxq/internal/redistest"
)

// TestBadInput checks exit 2 and a message naming what is wrong. Redis is
// a closed port: bad input is reported before any connection is tried.
func TestBadInput(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{
		"badstep.yaml": "steps:\n  - type: sandbox:explode\n",
		"badslug.json": `{"steps":[{"type":"server:start","payload":{"slug":"no spaces","command":"x"}}]}`,
		"typo.yaml":    "stepz: []\n",
		"empty.json":   `{"steps":[]}`,
		"src/a.txt":    "a",
	})
	tests := []struct {
		name string
		args []string
		want string // in stderr
	}{
		{"no name", []string{"ensure"}, "invalid name: --name is required"},
		{"name with space", []string{"ensure", "--name", "my shop"}, "invalid name:"},
		{"name with brace", []string{"destroy", "--name", "a{b}"}, "invalid name:"},
		{"namespace too long", []string{"ensure", "--name", "x", "--namespace", strings.Repeat("n", 129)}, "invalid namespace:"},
		{"no slug", []string{"start-server", "--name", "x", "--command", "npm start"}, "invalid slug:"},
		{"no start command", []string{"start-server", "--name", "x", "--slug", "web"}, "invalid command:"},
		{"bad restart policy", []string{"start-server", "--name", "x", "--slug", "web", "--command", "c", "--restart-policy", "sometimes"}, "invalid restart_policy:"},
		{"bad wait-for", []string{"restart-server", "--name", "x", "--slug", "web", "--wait-for", "done"}, "invalid wait_for:"},
		{"bad port", []string{"start-server", "--name", "x", "--slug", "web", "--command", "c", "--port", "70000"}, "invalid port:"},
		{"bad env key", []string{"env", "--name", "x", "--set", "1A=b"}, "invalid set:"},
		{"env nothing", []string{"env", "--name", "x"}, "nothing to change"},
		{"run no command", []string{"run", "--name", "x"}, "no command"},
		{"run both commands", []string{"run", "--name", "x", "--command", "ls", "--", "pwd"}, "not both"},
		{"unknown flag", []string{"ensure", "--name", "x", "--colour"}, "flag provided but not defined"},
		{"extra argument", []string{"destroy", "--name", "x", "now"}, `unexpected argument "now"`},
		{"bad int", []string{"ensure", "--name", "x", "--timeout-ms", "soon"}, "invalid value"},
		{"negative max-retry", []string{"ensure", "--name", "x", "--max-retry", "-2"}, "--max-retry must not be negative"},
		{"zero wait timeout", []string{"ensure", "--name", "x", "--wait", "--timeout", "0s"}, "--timeout must be positive"},
		{"write nothing", []string{"write-files", "--name", "x"}, "nothing to send"},
		{"missing dir", []string{"write-files", "--name", "x", "--dir", filepath.Join(dir, "nope")}, "--dir"},
		{"bad ignore glob", []string{"write-files", "--name", "x", "--dir", dir, "--ignore", "[x"}, "invalid --ignore pattern"},
		{"path escapes", []string{"write-files", "--name", "x", "--file", filepath.Join(dir, "src/a.txt") + "=../../etc/passwd"}, "invalid files[0].path:"},
		{"workflow no file", []string{"workflow", "--name", "x"}, "--file is required"},
		{"workflow bad step type", []string{"workflow", "--name", "x", "--file", filepath.Join(dir, "badstep.yaml")}, "invalid steps[0].type:"},
		{"workflow bad step payload", []string{"workflow", "--name", "x", "--file", filepath.Join(dir, "badslug.json")}, "invalid steps[0].payload.slug:"},
		{"workflow unknown key", []string{"workflow", "--name", "x", "--file", filepath.Join(dir, "typo.yaml")}, "stepz"},
		{"workflow no steps", []string{"workflow", "--name", "x", "--file", filepath.Join(dir, "empty.json")}, "no steps"},
		{"workflow without name", []string{"workflow", "--file", filepath.Join(dir, "badslug.json")}, "invalid name: --name is required"},
		{"status without id", []string{"status"}, "want exactly one task id"},
		{"cancel two ids", []string{"cancel", "a", "b"}, "want exactly one task id"},
		{"bad redis url", []string{"ensure", "--name", "x", "--redis-url", "http://localhost"}, "unsupported Redis URL scheme"},
		{"unknown command", []string{"deploy"}, `unknown command "deploy"`},
	}
	closed := closedPortURL(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := cli{redisURL: closed}.must(t, exitUsage, tt.args...)
			if !strings.Contains(r.stderr, tt.want) {
				t.Errorf("stderr %q does not contain %q", r.stderr, tt.want)
			}
			if r.stdout != "" {
				t.Errorf("stdout %q, want nothing", r.stdout)
			}
		})
	}
}

// TestWriteFilesPathValidatedByTasks checks that a problem only the file
// set as a whole reveals (tasks.Client.WriteFiles validates it) is still
// exit 2 and names the field.
func TestWriteFilesPathValidatedByTasks(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"a.txt": "a"})
	r := cli{redisURL: db.URL()}.must(t, exitUsage, "write-files", "--name", "x", "--file", filepath.Join(dir, "a.txt")+"=/app/a.txt", "--delete", "/app/a.txt")
	if !strings.Contains(r.stderr, "invalid files[1].path:") {
		t.Errorf("stderr %q does not name files[1].path", r.stderr)
	}
	if n := len(pendingTasks(t, db, "default")); n != 0 {
		t.Errorf("%d tasks enqueued, want 0", n)
	}
}

// TestSecretsNotPrinted checks that a malformed KEY=VALUE argument and a
// Redis password stay out of every message.
func TestSecretsNotPrinted(t *testing.T) {
	t.Parallel()
	const secret = "hunter2-s3cr3t"
	closed := closedPortURL(t)
	withPassword := strings.Replace(closed, "redis://", "redis://user:"+secret+"@", 1)
	runs := []struct {
		code int
		args []string
	}{
		{exitUsage, []string{"ensure", "--name", "x", "--env", secret}},
		{exitUsage, []string{"start-server", "--name", "x", "--slug", "w", "--command", "c", "--env", "=" + secret}},
		{exitUsage, []string{"ensure", "--name", "x", "--redis-url", "redis://u:" + secret + "@host:notaport"}},
		{exitUsage, []string{"ensure", "--name", "x", "--redis-url", "redis://u:" + secret + "@[::1"}},
		{exitNoRedis, []string{"ensure", "--name", "x", "--redis-url", withPassword}},
		{exitNoRedis, []string{"ensure", "--name", "x", "--redis-url", withPassword + "," + withPassword}},
	}
	for _, rr := range runs {
		r := cli{redisURL: closed}.must(t, rr.code, rr.args...)
		if strings.Contains(r.stderr+r.stdout, secret) {
			t.Errorf("enqueue %v printed the secret: %s", rr.args, r.stderr)
		}
	}
}

// TestUnreachableRedis checks exit 4 with the address in the message.
func TestUnreachableRedis(t *testing.T) {
	t.Parallel()
	closed := closedPortURL(t)
	addr := strings.TrimPrefix(closed, "redis://")
	for _, args := range [][]string{
		{"ensure", "--name", "shop"},
		{"status", "some-id"},
		{"cancel", "some-id", "--queue", "default"},
	} {
		r := cli{redisURL: closed}.must(t, exitNoRedis, args...)
		if !strings.Contains(r.stderr, "cannot reach Redis at "+addr) {
			t.Errorf("enqueue %v: stderr %q does not name %s", args, r.stderr, addr)
		}
	}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	c := cli{redisURL: closedPortURL(t)}
	bare := c.must(t, exitUsage)
	help := c.must(t, exitOK, "help")
	for _, r := range []cliResult{bare, help} {
		for _, cmd := range commands() {
			if !strings.Contains(r.stdout+r.stderr, "\n  "+cmd.name+" ") {
				t.Errorf("overview does not list %s", cmd.name)
			}
		}
	}
	if bare.stdout != "" {
		t.Errorf("bare enqueue printed on stdout: %q", bare.stdout)
	}
	for _, cmd := range commands() {
		for _, args := range [][]string{{cmd.name, "-h"}, {cmd.name, "--help"}, {"help", cmd.name}} {
			r := c.must(t, exitOK, args...)
			for _, want := range []string{"Usage: enqueue " + cmd.name, "Examples:\n  enqueue " + cmd.name, "--redis-url"} {
				if !strings.Contains(r.stdout, want) {
					t.Errorf("enqueue %v: usage lacks %q", args, want)
				}
			}
		}
	}
}
