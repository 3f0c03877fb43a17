package handlers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"path"
	"strings"

	"github.com/sandboxq/sandboxq/gateway"
	"github.com/sandboxq/sandboxq/tasks"
)

// decodeTimeoutMS bounds the command that decodes one staged binary file.
const decodeTimeoutMS = 60_000

// A binary file (tasks.File with encoding base64) cannot go through the
// daemon's file API, which carries UTF-8 text only (protocol §2.5). It
// travels as its base64 text, written like any other file to a stage
// beside its target, and one command then decodes the stage to a
// temporary name in the same directory, renames that onto the target
// (atomic: readers see the old file or the new one, never a part) and
// removes the stage and the temporary file whatever happened:
//
//	if [ -d ./N ]; then echo "… is a directory" >&2; rc=1;
//	else base64 -d ./S > ./T && mv -f ./T ./N; rc=$?; fi; rm -f ./S ./T; exit $rc
//
// base64 -d, mv and rm are in coreutils and BusyBox, so in every Linux
// sandbox image of note; [ is the shell's.
// The command runs with the target's directory as cwd and names the files
// relatively, so it means the same on every daemon whether absolute paths
// in commands are sandbox paths or, as with the local provider, host paths.
// The stage and temporary names derive from the target path and content:
// a retry writes and decodes the same stage again, which is idempotent.
type stagedFile tasks.File

// names returns the directory of the target and the base names of the
// stage, the temporary file and the target.
func (s stagedFile) names() (dir, stage, tmp, name string) {
	sum := sha256.Sum256([]byte(s.Path + "\x00" + s.Content))
	id := ".sandboxq-" + hex.EncodeToString(sum[:8])
	return path.Dir(s.Path), id + ".b64", id + ".tmp", path.Base(s.Path)
}

// stage is the sandbox path of the staged base64 text.
func (s stagedFile) stage() string {
	dir, stage, _, _ := s.names()
	return path.Join(dir, stage)
}

// decode runs the command that turns the stage into the target. A
// non-zero exit is permanent: the same command would fail again.
func (s stagedFile) decode(ctx context.Context, d *gateway.Daemon) error {
	dir, stage, tmp, name := s.names()
	st, tm, nm := shellArg("./"+stage), shellArg("./"+tmp), shellArg("./"+name)
	// mv onto a directory (or a link to one) would move the file into it;
	// refuse that as the file API refuses to write over a directory.
	cmd := "if [ -d " + nm + " ]; then echo " + shellArg(s.Path+" is a directory") + " >&2; rc=1; " +
		"else base64 -d " + st + " > " + tm + " && mv -f " + tm + " " + nm + "; rc=$?; fi; " +
		"rm -f " + st + " " + tm + "; exit $rc"
	req := gateway.RunCommandRequest{Command: cmd, TimeoutMS: decodeTimeoutMS}
	if dir != "." {
		req.Cwd = dir
	}
	out, err := d.RunCommand(ctx, req)
	if err != nil {
		return err
	}
	code := 0
	switch {
	case out.ExitCode != nil:
		code = *out.ExitCode
	case out.Status == "failed":
		code = -1 // a daemon that gives no exit code
	}
	if code != 0 {
		return Permanentf("decode the staged base64 of %s: exit %d: %s", s.Path, code, firstLine(out.Stderr))
	}
	return nil
}

// shellArg quotes s for a POSIX shell.
func shellArg(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// firstLine is the first line of s, cut to a readable length.
func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	if r := []rune(s); len(r) > 200 {
		s = string(r[:200]) + "…"
	}
	if s == "" {
		return "no error output"
	}
	return s
}
