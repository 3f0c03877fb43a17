package handlers

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"

	"github.com/sandboxq/sandboxq/gateway"
	"github.com/sandboxq/sandboxq/tasks"
)

// A binary file (tasks.File with encoding base64) cannot go through the
// daemon's file API, which carries UTF-8 text only (protocol §2.5). It
// travels as its base64 text, written like any other file to a stage
// beside its target, and a command then decodes the stage to a temporary
// name in the same directory, renames that onto the target (atomic: readers
// see the old file or the new one, never a part) and removes the stage and
// the temporary file whatever happened. One command decodes every staged
// file of an attempt (split only when the script grows long), so a
// thousand icons cost one or two round trips, not a thousand:
//
//	x() { if [ -d "$3" ]; then rm -f "$1"; echo "… is a directory"; return 1; fi
//	      base64 -d "$1" > "$2" && mv -f "$2" "$3"; r=$?; rm -f "$1" "$2"; return $r; }
//	y() { if e=$(x "$2" "$3" "$4" 2>&1); then echo "sandboxq-decoded $1";
//	      else printf 'sandboxq-failed %s %s\n' "$1" "<first 300 bytes of $e>"; fi; }
//	y 0 './app/.sandboxq-<id>.b64' './app/.sandboxq-<id>.tmp' './app/logo.png'
//	…
//
// A file counts as written only on its "decoded" line; a file without a
// line (the command did not run, or was cut short) stays pending and a
// retry stages and decodes it again. A "failed" line (such as a target
// that is a directory, which mv would move the file into) is permanent.
//
// The command names files relative to its cwd — "/" for absolute paths,
// the daemon's working directory for relative ones — so it means the same
// on every daemon, whether absolute paths in commands are sandbox paths or,
// as with the local provider, host paths. The stage and temporary names
// derive from the target path and content, so a retry reuses them.
// base64 -d, mv, rm, tr and cut are in coreutils and BusyBox.

// decodeScriptBytes bounds the script of one decode command.
const decodeScriptBytes = 48 << 10

// decodeTimeoutMS bounds one decode command.
const decodeTimeoutMS = 120_000

// Markers of the decode command's output.
const (
	markDecoded = "sandboxq-decoded "
	markFailed  = "sandboxq-failed "
)

// decodeFuncs starts every decode script: x decodes one file, y runs x and
// reports the outcome of file number $1 on one line.
const decodeFuncs = `x() { if [ -d "$3" ]; then rm -f "$1"; echo "$3 is a directory"; return 1; fi; ` +
	`base64 -d "$1" > "$2" && mv -f "$2" "$3"; r=$?; rm -f "$1" "$2"; return $r; }` + "\n" +
	`y() { if e=$(x "$2" "$3" "$4" 2>&1); then echo "` + markDecoded + `$1"; ` +
	`else printf '` + markFailed + `%s %s\n' "$1" "$(printf '%s' "$e" | tr '\n' ' ' | cut -c1-300)"; fi; }` + "\n"

// stagedNames returns the sandbox paths of f's stage and temporary file.
func stagedNames(f tasks.File) (stage, tmp string) {
	hash := sha256.New()
	writeString(hash, f.Path)
	writeString(hash, "\x00")
	writeString(hash, f.Content)
	sum := hash.Sum(nil)
	id := path.Join(path.Dir(f.Path), ".sandboxq-"+hex.EncodeToString(sum[:8]))
	return id + ".b64", id + ".tmp"
}

// writeString writes s to w through a small buffer: the hashes do not
// take strings, and converting a large content whole would copy it.
func writeString(w io.Writer, s string) {
	buf := make([]byte, min(len(s), 32<<10))
	for len(s) > 0 {
		n := copy(buf, s)
		_, _ = w.Write(buf[:n])
		s = s[n:]
	}
}

// decodeStaged decodes the staged files and returns one outcome per file,
// nil when it was written.
func decodeStaged(ctx context.Context, d Commands, files []tasks.File) []error {
	errs := make([]error, len(files))
	for _, g := range decodeGroups(files) {
		out, err := d.RunCommand(ctx, gateway.RunCommandRequest{Command: g.script, Cwd: g.cwd, TimeoutMS: decodeTimeoutMS})
		if err == nil {
			err = errors.New("the decode command reported nothing for this file")
		}
		for _, i := range g.files {
			errs[i] = err
		}
		if out != nil {
			readDecodeOutput(out.Stdout, files, g.files, errs)
		}
	}
	return errs
}

// decodeGroup is one decode command: its cwd, its script, and the indexes
// of the files it decodes.
type decodeGroup struct {
	cwd, script string
	files       []int
}

// decodeGroups writes the scripts: files with absolute paths run from "/",
// relative ones from the daemon's working directory; a script is cut at
// decodeScriptBytes.
func decodeGroups(files []tasks.File) []decodeGroup {
	var out []decodeGroup
	for _, cwd := range []string{"/", ""} {
		var g *decodeGroup
		for i, f := range files {
			if path.IsAbs(f.Path) != (cwd == "/") {
				continue
			}
			stage, tmp := stagedNames(f)
			line := fmt.Sprintf("y %d %s %s %s\n", i, relArg(stage), relArg(tmp), relArg(f.Path))
			if g != nil && len(g.script)+len(line) > decodeScriptBytes {
				out, g = append(out, *g), nil
			}
			if g == nil {
				g = &decodeGroup{cwd: cwd, script: decodeFuncs}
			}
			g.script += line
			g.files = append(g.files, i)
		}
		if g != nil {
			out = append(out, *g)
		}
	}
	return out
}

// readDecodeOutput sets the outcome of every file of the group that the
// command's output names.
func readDecodeOutput(stdout string, files []tasks.File, group []int, errs []error) {
	in := make(map[int]bool, len(group))
	for _, i := range group {
		in[i] = true
	}
	sc := bufio.NewScanner(strings.NewReader(stdout))
	for sc.Scan() {
		line := sc.Text()
		ok := strings.HasPrefix(line, markDecoded)
		rest, failed := strings.CutPrefix(line, markFailed)
		if ok {
			rest = strings.TrimPrefix(line, markDecoded)
		} else if !failed {
			continue
		}
		num, msg, _ := strings.Cut(rest, " ")
		i, err := strconv.Atoi(num)
		if err != nil || !in[i] {
			continue
		}
		if ok {
			errs[i] = nil
		} else {
			errs[i] = Permanentf("decode the staged base64 of %s: %s", files[i].Path, strings.TrimSpace(msg))
		}
	}
}

// relArg is a sandbox path as a quoted shell argument relative to the
// decode command's cwd ("/" for an absolute path), starting with "./" so
// that no name reads as an option.
func relArg(p string) string {
	return shellArg("./" + strings.TrimLeft(p, "/"))
}

// shellArg quotes s for a POSIX shell.
func shellArg(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
