package local

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/sandboxq/sandboxq/gateway"
)

// maxBatchFiles bounds the operations of one POST /files/batch.
const maxBatchFiles = 10000

// serveFiles handles /files, /files/batch and /files/{path}. The file path
// is taken from the escaped request path, so the three encodings clients
// use (/files/tmp/a.txt, /files/%2Ftmp%2Fa.txt, /files//tmp/a.txt) all
// name the same file.
func (s *sandbox) serveFiles(w http.ResponseWriter, r *http.Request, rt route) {
	if rt.escaped == "/files" {
		switch r.Method {
		case http.MethodGet:
			p := r.URL.Query().Get("path")
			if p == "" {
				p = "/"
			}
			s.answerFiles(w, http.StatusOK, "Files listed", func() (any, error) {
				files, err := s.listDir(p)
				return map[string]any{"path": sandboxPath(p), "files": files}, err
			})
		case http.MethodPost:
			var body struct {
				Path    string `json:"path"`
				Content string `json:"content"`
			}
			if err := decodeBody(r, &body, s.maxFileBody(), false); err != nil {
				writeDaemonError(w, statusOf(err), err.Error())
				return
			}
			if body.Path == "" {
				writeDaemonError(w, http.StatusBadRequest, "path is required")
				return
			}
			s.answerFiles(w, http.StatusCreated, "File written", func() (any, error) {
				fi, err := s.writeFile(body.Path, body.Content)
				return map[string]any{"file": fi}, err
			})
		default:
			allowMethod(w, r, false, http.MethodGet, http.MethodPost)
		}
		return
	}
	raw := strings.TrimPrefix(rt.escaped, "/files/")
	if raw == "batch" && r.Method == http.MethodPost {
		s.handleBatch(w, r)
		return
	}
	p, err := url.PathUnescape(raw)
	if err != nil {
		writeDaemonError(w, http.StatusBadRequest, fmt.Sprintf("bad file path encoding %q", raw))
		return
	}
	if p == "" {
		p = "/"
	}
	switch r.Method {
	case http.MethodGet:
		withContent := r.URL.Query().Get("content") == "true"
		s.answerFiles(w, http.StatusOK, "File retrieved", func() (any, error) {
			fi, content, err := s.statFile(p, withContent)
			if err != nil {
				return nil, err
			}
			if withContent {
				return map[string]any{"file": fi, "content": content}, nil
			}
			return map[string]any{"file": fi}, nil
		})
	case http.MethodHead:
		if _, _, err := s.statFile(p, false); err != nil {
			w.WriteHeader(statusOf(err))
			return
		}
		w.WriteHeader(http.StatusOK)
	case http.MethodPut:
		var body struct {
			Content string `json:"content"`
		}
		if err := decodeBody(r, &body, s.maxFileBody(), true); err != nil {
			writeDaemonError(w, statusOf(err), err.Error())
			return
		}
		s.answerFiles(w, http.StatusOK, "File written", func() (any, error) {
			fi, err := s.writeFile(p, body.Content)
			return map[string]any{"file": fi}, err
		})
	case http.MethodDelete:
		if err := s.deleteFile(p, false); err != nil {
			writeDaemonError(w, statusOf(err), err.Error())
			return
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		allowMethod(w, r, false, http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete)
	}
}

// maxFileBody bounds a request that carries one file: JSON escaping can
// make the body several times larger than the content.
func (s *sandbox) maxFileBody() int64 { return 6*s.p.maxFileSize + 64<<10 }

func (s *sandbox) answerFiles(w http.ResponseWriter, status int, msg string, f func() (any, error)) {
	data, err := f()
	if err != nil {
		writeDaemonError(w, statusOf(err), err.Error())
		return
	}
	writeJSON(w, status, map[string]any{"message": msg, "data": data})
}

// fileInfo builds the wire FileInfo of sandbox path sp.
func fileInfo(sp string, fi fs.FileInfo) gateway.FileInfo {
	name := path.Base(sp)
	if sp == "/" {
		name = "/"
	}
	return gateway.FileInfo{
		Name:       name,
		Path:       sp,
		Size:       fi.Size(),
		IsDir:      fi.IsDir(),
		ModifiedAt: fi.ModTime().UTC(),
	}
}

// rel turns a resolved host path into a path relative to the sandbox
// directory, for the os.Root.
func (s *sandbox) rel(host string) string {
	r, err := filepath.Rel(s.dir, host)
	if err != nil {
		return "." // unreachable: host is inside s.dir
	}
	return r
}

// fsErr turns an error of an operation on sandbox path sp into a client
// error naming the path, without host paths.
func fsErr(op, sp string, err error) error {
	var inner error = err
	var pe *fs.PathError
	if errors.As(err, &pe) {
		inner = pe.Err
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		inner = le.Err
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return notFound("%s %s: no such file or directory", op, sp)
	case errors.Is(err, fs.ErrPermission):
		return &httpError{http.StatusForbidden, fmt.Sprintf("%s %s: permission denied", op, sp)}
	case errors.Is(err, syscall.ENOTDIR):
		return badRequest("%s %s: a component of the path is not a directory", op, sp)
	case errors.Is(err, syscall.EISDIR):
		return badRequest("%s %s: is a directory", op, sp)
	case errors.Is(err, syscall.ELOOP), strings.Contains(inner.Error(), "escapes"):
		return &pathError{sp, "a symbolic link in it resolves outside the sandbox"}
	}
	return fmt.Errorf("%s %s: %v", op, sp, inner)
}

func (s *sandbox) listDir(p string) ([]gateway.FileInfo, error) {
	host, err := resolvePath(s.dir, p)
	if err != nil {
		return nil, err
	}
	sp := sandboxPath(p)
	f, err := s.fsRoot.Open(s.rel(host))
	if err != nil {
		return nil, fsErr("list", sp, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fsErr("list", sp, err)
	}
	if !fi.IsDir() {
		return nil, badRequest("list %s: not a directory", sp)
	}
	entries, err := f.ReadDir(-1)
	if err != nil {
		return nil, fsErr("list", sp, err)
	}
	out := make([]gateway.FileInfo, 0, len(entries))
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			continue // removed while listing
		}
		out = append(out, fileInfo(path.Join(sp, e.Name()), info))
	}
	slices.SortFunc(out, func(a, b gateway.FileInfo) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

func (s *sandbox) statFile(p string, withContent bool) (gateway.FileInfo, string, error) {
	host, err := resolvePath(s.dir, p)
	if err != nil {
		return gateway.FileInfo{}, "", err
	}
	sp := sandboxPath(p)
	unlock := s.files.lock(host)
	defer unlock()
	fi, err := s.fsRoot.Stat(s.rel(host))
	if err != nil {
		return gateway.FileInfo{}, "", fsErr("read", sp, err)
	}
	if !withContent {
		return fileInfo(sp, fi), "", nil
	}
	content, err := s.readLocked(host, sp)
	if err != nil {
		return gateway.FileInfo{}, "", err
	}
	return fileInfo(sp, fi), content, nil
}

// writeFile creates or replaces a file, creating its parent directories.
func (s *sandbox) writeFile(p, content string) (gateway.FileInfo, error) {
	sp := sandboxPath(p)
	if int64(len(content)) > s.p.maxFileSize {
		return gateway.FileInfo{}, &httpError{http.StatusRequestEntityTooLarge, fmt.Sprintf("write %s: content is larger than %d bytes", sp, s.p.maxFileSize)}
	}
	host, err := resolvePath(s.dir, p)
	if err != nil {
		return gateway.FileInfo{}, err
	}
	unlock := s.files.lock(host)
	defer unlock()
	return s.writeLocked(host, sp, content)
}

// writeLocked writes content to the resolved host path; the caller holds
// its path lock. The content goes to a temporary file in the same
// directory that is then renamed over the target, so readers never see a
// partial file and a crash never leaves one.
func (s *sandbox) writeLocked(host, sp, content string) (gateway.FileInfo, error) {
	if host == s.dir {
		return gateway.FileInfo{}, badRequest("write %s: is the sandbox root directory", sp)
	}
	rel := s.rel(host)
	dir := filepath.Dir(rel)
	if dir != "." {
		if err := s.fsRoot.MkdirAll(dir, 0o755); err != nil {
			return gateway.FileInfo{}, fsErr("write", sp, err)
		}
	}
	mode := fs.FileMode(0o644)
	if fi, err := s.fsRoot.Lstat(rel); err == nil {
		if fi.IsDir() {
			return gateway.FileInfo{}, badRequest("write %s: is a directory", sp)
		}
		if fi.Mode().IsRegular() {
			mode = fi.Mode().Perm()
		}
	}
	tmp := filepath.Join(dir, "."+filepath.Base(rel)+".sbxq-"+randHex(6)+".tmp")
	f, err := s.fsRoot.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return gateway.FileInfo{}, fsErr("write", sp, err)
	}
	_, werr := io.WriteString(f, content)
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		_ = s.fsRoot.Remove(tmp)
		return gateway.FileInfo{}, fsErr("write", sp, err)
	}
	if err := s.fsRoot.Rename(tmp, rel); err != nil {
		_ = s.fsRoot.Remove(tmp)
		return gateway.FileInfo{}, fsErr("write", sp, err)
	}
	fi, err := s.fsRoot.Stat(rel)
	if err != nil {
		return gateway.FileInfo{}, fsErr("write", sp, err)
	}
	return fileInfo(sp, fi), nil
}

// readLocked reads the file at the resolved host path, at most
// maxFileSize bytes; the caller holds its path lock.
func (s *sandbox) readLocked(host, sp string) (string, error) {
	f, err := s.fsRoot.Open(s.rel(host))
	if err != nil {
		return "", fsErr("read", sp, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fsErr("read", sp, err)
	}
	if fi.IsDir() {
		return "", badRequest("read %s: is a directory", sp)
	}
	b, err := io.ReadAll(io.LimitReader(f, s.p.maxFileSize+1))
	if err != nil {
		return "", fsErr("read", sp, err)
	}
	if int64(len(b)) > s.p.maxFileSize {
		return "", &httpError{http.StatusRequestEntityTooLarge, fmt.Sprintf("read %s: file is larger than %d bytes", sp, s.p.maxFileSize)}
	}
	return string(b), nil
}

// deleteFile removes a file or directory tree. The last component is not
// followed: deleting a symbolic link removes the link. With missingOK a
// path that does not exist is not an error.
func (s *sandbox) deleteFile(p string, missingOK bool) error {
	sp := sandboxPath(p)
	host, err := resolveNoFollow(s.dir, p)
	if err != nil {
		return err
	}
	if host == s.dir {
		return badRequest("delete %s: cannot delete the sandbox root directory", sp)
	}
	unlock := s.files.lock(host)
	defer unlock()
	rel := s.rel(host)
	if _, err := s.fsRoot.Lstat(rel); err != nil {
		if missingOK && errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fsErr("delete", sp, err)
	}
	if err := s.fsRoot.RemoveAll(rel); err != nil {
		return fsErr("delete", sp, err)
	}
	return nil
}

// handleBatch applies POST /files/batch: the last operation per path
// wins, paths are processed in sorted order, each under its path lock. A
// delete of a missing path succeeds (the batch is idempotent under
// retries). 200 when every path succeeded, 207 otherwise.
func (s *sandbox) handleBatch(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Files []gateway.BatchFile `json:"files"`
	}
	limit := 64*s.p.maxFileSize + 1<<20
	if err := decodeBody(r, &body, limit, false); err != nil {
		writeDaemonError(w, statusOf(err), err.Error())
		return
	}
	if len(body.Files) == 0 {
		writeDaemonError(w, http.StatusBadRequest, "files is empty")
		return
	}
	if len(body.Files) > maxBatchFiles {
		writeDaemonError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("files has %d entries; at most %d per batch", len(body.Files), maxBatchFiles))
		return
	}
	last := make(map[string]gateway.BatchFile)
	for _, f := range body.Files {
		key := f.Path
		if _, err := resolvePathSyntax(f.Path); err == nil && f.Path != "" {
			key = sandboxPath(f.Path)
		}
		last[key] = f
	}
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range last {
			if !yield(k) {
				return
			}
		}
	})
	results := make([]gateway.BatchResult, 0, len(keys))
	failed := 0
	for _, k := range keys {
		f := last[k]
		res := gateway.BatchResult{Path: f.Path, Success: true}
		var err error
		switch {
		case f.Path == "":
			err = badRequest("path is required")
		case f.Operation == gateway.BatchWrite:
			var fi gateway.FileInfo
			fi, err = s.writeFile(f.Path, f.Content)
			if err == nil {
				res.File = &fi
			}
		case f.Operation == gateway.BatchDelete:
			err = s.deleteFile(f.Path, true)
		default:
			err = badRequest("unknown operation %q (want %q or %q)", f.Operation, gateway.BatchWrite, gateway.BatchDelete)
		}
		if err != nil {
			res.Success, res.Error = false, err.Error()
			failed++
		}
		results = append(results, res)
	}
	status, msg := http.StatusOK, fmt.Sprintf("Batch completed: %d operations", len(results))
	if failed > 0 {
		status, msg = http.StatusMultiStatus, fmt.Sprintf("Batch completed with %d of %d operations failed", failed, len(results))
	}
	writeJSON(w, status, map[string]any{"message": msg, "data": map[string]any{"results": results}})
}

// pathLocks is a set of mutexes keyed by host path, created on demand and
// dropped when unused.
type pathLocks struct {
	mu sync.Mutex
	m  map[string]*pathLock
}

type pathLock struct {
	mu   sync.Mutex
	refs int
}

func (l *pathLocks) lock(key string) (unlock func()) {
	l.mu.Lock()
	if l.m == nil {
		l.m = make(map[string]*pathLock)
	}
	pl := l.m[key]
	if pl == nil {
		pl = &pathLock{}
		l.m[key] = pl
	}
	pl.refs++
	l.mu.Unlock()
	pl.mu.Lock()
	return func() {
		pl.mu.Unlock()
		l.mu.Lock()
		pl.refs--
		if pl.refs == 0 {
			delete(l.m, key)
		}
		l.mu.Unlock()
	}
}
