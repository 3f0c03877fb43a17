package handlers

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/sandboxq/sandboxq/tasks"
)

// TestDecodeGroups: long scripts are split at decodeScriptBytes, absolute
// and relative paths never share a command, and every file is in exactly
// one command, in order.
func TestDecodeGroups(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("n", 200)
	var files []tasks.File
	for i := range 600 {
		p := fmt.Sprintf("/a/%s-%d", long, i)
		if i%3 == 0 {
			p = p[1:]
		}
		files = append(files, tasks.BinaryFile(p, []byte{byte(i)}))
	}
	groups := decodeGroups(files)
	seen := make([]int, len(files))
	byCwd := map[string]int{}
	for _, g := range groups {
		byCwd[g.cwd]++
		if len(g.script) > decodeScriptBytes {
			t.Errorf("script of %d bytes, above %d", len(g.script), decodeScriptBytes)
		}
		if !strings.HasPrefix(g.script, decodeFuncs) {
			t.Errorf("script does not start with the functions")
		}
		for j, i := range g.files {
			seen[i]++
			if abs := strings.HasPrefix(files[i].Path, "/"); abs != (g.cwd == "/") {
				t.Errorf("%s is in the command with cwd %q", files[i].Path, g.cwd)
			}
			if j > 0 && i <= g.files[j-1] {
				t.Errorf("files out of order: %v", g.files)
			}
			if !strings.Contains(g.script, fmt.Sprintf("\ny %d './", i)) {
				t.Errorf("script lacks the line of file %d", i)
			}
		}
	}
	for i, n := range seen {
		if n != 1 {
			t.Errorf("file %d is in %d commands", i, n)
		}
	}
	if byCwd["/"] < 2 || byCwd[""] < 2 {
		t.Errorf("commands by cwd %v: want the long scripts split", byCwd)
	}
}

// TestReadDecodeOutput: only a "decoded" line makes a file written; a
// "failed" line is permanent with its message; lines of other groups,
// unknown numbers and noise change nothing.
func TestReadDecodeOutput(t *testing.T) {
	t.Parallel()
	files := []tasks.File{{Path: "/a"}, {Path: "/b"}, {Path: "/c"}, {Path: "/d"}}
	pending := errors.New("pending")
	errs := []error{pending, pending, pending, pending}
	out := "noise\n" + markDecoded + "0\n" + markFailed + "1 ./b is a directory\n" + markDecoded + "3\n" + markDecoded + "x\n" + markDecoded + "99\n"
	readDecodeOutput(out, files, []int{0, 1, 2}, errs)
	if errs[0] != nil {
		t.Errorf("file 0: %v, want written", errs[0])
	}
	if !isPermanent(errs[1]) || !strings.Contains(errs[1].Error(), "./b is a directory") {
		t.Errorf("file 1: %v, want a permanent error saying ./b is a directory", errs[1])
	}
	if errs[2] != pending || errs[3] != pending {
		t.Errorf("files 2, 3: %v, %v; want both still pending (no line, other group)", errs[2], errs[3])
	}
}

func TestShellArg(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"/app/it's.png": `'./app/it'\''s.png'`,
		"-x/y":          `'./-x/y'`,
		"a b/$(c)":      `'./a b/$(c)'`,
	} {
		if got := relArg(in); got != want {
			t.Errorf("relArg(%q) = %s, want %s", in, got, want)
		}
	}
}
