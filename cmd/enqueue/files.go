package main

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"unicode/utf8"

	"github.com/sandboxq/sandboxq/tasks"
)

// skippedDirs are never uploaded from --dir, whatever --ignore says.
var skippedDirs = map[string]bool{".git": true, "node_modules": true}

// fileEntry is one file to send: its path in the sandbox and its content,
// or a deletion.
type fileEntry struct {
	remote  string
	content []byte
	delete  bool
}

// file is the entry as a files:write file: UTF-8 content as text, any
// other content as base64 (tasks.BinaryFile), which the worker decodes in
// the sandbox.
func (e fileEntry) file() tasks.File {
	switch {
	case e.delete:
		return tasks.File{Path: e.remote, Delete: true}
	case utf8.Valid(e.content):
		return tasks.File{Path: e.remote, Content: string(e.content)}
	}
	return tasks.BinaryFile(e.remote, e.content)
}

// ignoreSet matches --ignore globs. A pattern without "/" matches the base
// name of a file or directory at any depth ("*.log", "dist"); a pattern with
// "/" matches the path relative to --dir ("src/gen/*").
type ignoreSet []string

func newIgnoreSet(patterns []string) (ignoreSet, error) {
	for _, p := range patterns {
		if _, err := path.Match(p, ""); err != nil {
			return nil, usagef("invalid --ignore pattern %q: %v", p, err)
		}
	}
	return ignoreSet(patterns), nil
}

func (s ignoreSet) match(rel string) bool {
	base := path.Base(rel)
	for _, p := range s {
		target := base
		if strings.Contains(p, "/") {
			target = strings.TrimPrefix(p, "/")
			p, target = target, rel
		}
		if ok, _ := path.Match(p, target); ok {
			return true
		}
	}
	return false
}

// joinRemote puts rel (slash-separated) under the --to prefix.
func joinRemote(to, rel string) string {
	if to == "" {
		return rel
	}
	return path.Join(to, rel)
}

// collectDir reads every regular file under dir, skipping .git and
// node_modules directories and what ignore matches, and maps each to
// to/<path relative to dir>. Symbolic links and other non-regular files are
// skipped, each skip reported on warn. Files that are not UTF-8 text are
// sent as binary (base64) files.
func collectDir(dir, to string, ignore ignoreSet, warn io.Writer) ([]fileEntry, error) {
	info, err := os.Stat(dir)
	if err != nil {
		return nil, usagef("--dir: %v", err)
	}
	if !info.IsDir() {
		return nil, usagef("--dir %s is not a directory", dir)
	}
	var out []fileEntry
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		r, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel := filepath.ToSlash(r)
		if d.IsDir() {
			if skippedDirs[d.Name()] || ignore.match(rel) {
				return filepath.SkipDir
			}
			return nil
		}
		if ignore.match(rel) {
			return nil
		}
		if !d.Type().IsRegular() {
			fmt.Fprintf(warn, "enqueue: skipping %s: not a regular file\n", rel)
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		out = append(out, fileEntry{remote: joinRemote(to, rel), content: b})
		return nil
	})
	if err != nil {
		return nil, usagef("--dir: %v", err)
	}
	return out, nil
}

// readFileFlag reads one --file argument: "local=remote", or "local" alone
// for to/<base name of local>.
func readFileFlag(arg, to string) (fileEntry, error) {
	local, remote, ok := strings.Cut(arg, "=")
	if local == "" || (ok && remote == "") {
		return fileEntry{}, usagef("--file %q: want LOCAL=REMOTE or LOCAL", arg)
	}
	if !ok {
		remote = joinRemote(to, filepath.Base(local))
	}
	b, err := os.ReadFile(local)
	if err != nil {
		return fileEntry{}, usagef("--file: %v", err)
	}
	return fileEntry{remote: remote, content: b}, nil
}
