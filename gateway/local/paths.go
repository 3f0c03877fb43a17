package local

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Path limits.
const (
	maxPathLen     = 4096
	maxSymlinkHops = 40
)

// pathError is a rejected sandbox path; it is answered with 400.
type pathError struct {
	path   string
	reason string
}

func (e *pathError) Error() string {
	p := e.path
	if len(p) > 200 {
		p = p[:200] + "…"
	}
	return fmt.Sprintf("invalid path %q: %s", p, e.reason)
}

// resolvePath maps a sandbox path to the host path it names, inside root.
//
// Absolute and relative sandbox paths both start at root ("/tmp/a" and
// "tmp/a" are the same file). The path is cleaned lexically; a ".." that
// would climb above root is refused. Every existing component is then
// resolved like the kernel would (symbolic links followed, relative to
// their directory, absolute ones from the host root, up to 40 hops), and
// the result must still lie inside root: a link anywhere in the path that
// leads outside is refused, including a dangling one whose target would be
// created by a write. Components that do not exist yet are appended as
// they are. The result has no symbolic links in its existing part.
//
// The check is repeated at open time: file operations go through an
// os.Root of the sandbox directory, whose openat-based walk refuses to
// leave it even if the tree changed after this function returned.
func resolvePath(root, p string) (string, error) {
	segs, err := resolvePathSyntax(p)
	if err != nil {
		return "", err
	}
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return "", fmt.Errorf("sandbox root: %w", err)
	}
	realRoot, err = filepath.Abs(realRoot)
	if err != nil {
		return "", fmt.Errorf("sandbox root: %w", err)
	}
	got, err := walkPath(realRoot, segs)
	if err != nil {
		return "", &pathError{p, err.Error()}
	}
	if !within(realRoot, got) { // unreachable: walkPath never leaves realRoot
		return "", &pathError{p, errOutside.Error()}
	}
	return got, nil
}

// cleanSegments splits p into its components with "." and empty ones
// removed and ".." applied; ok is false if ".." climbs above the start.
func cleanSegments(p string) (segs []string, ok bool) {
	for _, s := range strings.Split(p, "/") {
		switch s {
		case "", ".":
		case "..":
			if len(segs) == 0 {
				return nil, false
			}
			segs = segs[:len(segs)-1]
		default:
			segs = append(segs, s)
		}
	}
	return segs, true
}

// errOutside is the reason a walk stepped outside the root.
var errOutside = errors.New("a symbolic link in it resolves outside the sandbox")

// walkPath resolves segs below root, following symbolic links, and fails
// as soon as a step leaves root: a link that leads outside is refused even
// if later components would come back.
func walkPath(root string, segs []string) (string, error) {
	cur := root
	pending := append([]string(nil), segs...)
	hops := 0
	exists := true
	for len(pending) > 0 {
		name := pending[0]
		pending = pending[1:]
		switch name {
		case "", ".":
			continue
		case "..":
			// Only symbolic link targets bring ".." here.
			if cur == root {
				return "", errOutside
			}
			cur = filepath.Dir(cur)
			continue
		}
		next := filepath.Join(cur, name)
		if !exists {
			cur = next
			continue
		}
		fi, err := os.Lstat(next)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
				// The rest does not exist yet: it is taken as written.
				exists = false
				cur = next
				continue
			}
			return "", fmt.Errorf("cannot inspect %q: %v", name, errors.Unwrap(err))
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			cur = next
			continue
		}
		hops++
		if hops > maxSymlinkHops {
			return "", errors.New("too many levels of symbolic links")
		}
		target, err := os.Readlink(next)
		if err != nil {
			return "", fmt.Errorf("cannot read symbolic link %q: %v", name, errors.Unwrap(err))
		}
		tsegs := strings.Split(target, "/")
		if filepath.IsAbs(target) {
			// The kernel would walk from "/", outside the root; accept an
			// absolute target only if it names the root or a path below
			// it, and continue from the root.
			rest, ok := belowRoot(root, target)
			if !ok {
				return "", errOutside
			}
			cur, tsegs = root, rest
		}
		pending = append(tsegs, pending...)
	}
	return cur, nil
}

// belowRoot returns the components of the absolute path target after
// root, if target starts with root's components (no ".." among them).
func belowRoot(root, target string) ([]string, bool) {
	var tsegs []string
	for _, s := range strings.Split(target, "/") {
		if s != "" && s != "." {
			tsegs = append(tsegs, s)
		}
	}
	var rsegs []string
	if r := strings.Trim(root, "/"); r != "" {
		rsegs = strings.Split(r, "/")
	}
	if len(tsegs) < len(rsegs) {
		return nil, false
	}
	for i, r := range rsegs {
		if tsegs[i] != r {
			return nil, false
		}
	}
	return tsegs[len(rsegs):], true
}

// within reports whether p is root or below it; both must be clean.
func within(root, p string) bool {
	if p == root {
		return true
	}
	if root == "/" {
		return strings.HasPrefix(p, "/")
	}
	return strings.HasPrefix(p, root+string(filepath.Separator))
}

// sandboxPath is the canonical sandbox form of p: "/" plus its cleaned
// components (for responses and batch deduplication).
func sandboxPath(p string) string {
	segs, _ := cleanSegments(p)
	return "/" + strings.Join(segs, "/")
}

// resolveNoFollow is resolvePath for operations on a name itself (delete):
// the parent is resolved, the last component is kept as it is.
func resolveNoFollow(root, p string) (string, error) {
	if _, err := resolvePathSyntax(p); err != nil {
		return "", err
	}
	segs, _ := cleanSegments(p)
	if len(segs) == 0 {
		return resolvePath(root, "/")
	}
	parent, err := resolvePath(root, "/"+strings.Join(segs[:len(segs)-1], "/"))
	if err != nil {
		var pe *pathError
		if errors.As(err, &pe) {
			pe.path = p
		}
		return "", err
	}
	return filepath.Join(parent, segs[len(segs)-1]), nil
}

// resolvePathSyntax applies the checks of resolvePath that need no file
// system: NUL, length, escaping "..".
func resolvePathSyntax(p string) ([]string, error) {
	if strings.IndexByte(p, 0) >= 0 {
		return nil, &pathError{p, "contains a NUL byte"}
	}
	if len(p) > maxPathLen {
		return nil, &pathError{p, fmt.Sprintf("is longer than %d bytes", maxPathLen)}
	}
	segs, ok := cleanSegments(p)
	if !ok {
		return nil, &pathError{p, `".." escapes the sandbox root`}
	}
	return segs, nil
}
