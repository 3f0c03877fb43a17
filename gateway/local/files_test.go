package local

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/sandboxq/sandboxq/gateway"
)

type fileData struct {
	File    gateway.FileInfo `json:"file"`
	Content *string          `json:"content"`
}

func TestFilesCRUDAndEncodings(t *testing.T) {
	t.Parallel()
	p := startProvider(t, Config{})
	s := newSandbox(t, p, nil)
	dir := s.dir()

	content := "héllo\nwörld\t\"quoted\" \x01"
	r := s.must(http.StatusCreated, http.MethodPost, "/files", map[string]any{"path": "/tmp/a.txt", "content": content})
	fi := data[fileData](t, r).File
	if fi.Name != "a.txt" || fi.Path != "/tmp/a.txt" || fi.Size != int64(len(content)) || fi.IsDir || fi.ModifiedAt.IsZero() {
		t.Errorf("file info %+v", fi)
	}
	if m := r.object(t); m["message"] == nil {
		t.Errorf("no message in %s", r.body)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "tmp", "a.txt")); err != nil || string(b) != content {
		t.Fatalf("on disk: %q, %v", b, err)
	}

	// The three path encodings of clients, and a relative path, name the
	// same file.
	for _, path := range []string{"/files/tmp/a.txt", "/files/%2Ftmp%2Fa.txt", "/files//tmp/a.txt", "/files/./tmp//a.txt"} {
		r := s.must(http.StatusOK, http.MethodGet, path+"?content=true", nil)
		d := data[fileData](t, r)
		if d.Content == nil || *d.Content != content || d.File.Path != "/tmp/a.txt" {
			t.Errorf("%s: %s", path, r.body)
		}
		r = s.must(http.StatusOK, http.MethodGet, path, nil)
		if d := data[fileData](t, r); d.Content != nil || d.File.Size != int64(len(content)) {
			t.Errorf("%s metadata: %s", path, r.body)
		}
		s.must(http.StatusOK, http.MethodHead, path, nil)
	}
	s.must(http.StatusNotFound, http.MethodHead, "/files//tmp/missing.txt", nil)
	if msg := s.must(http.StatusNotFound, http.MethodGet, "/files//tmp/missing.txt?content=true", nil).errorText(t); !strings.Contains(msg, "/tmp/missing.txt") {
		t.Errorf("missing file error %q", msg)
	}

	// Overwrite with POST (relative path) and PUT; parents are created.
	s.must(http.StatusCreated, http.MethodPost, "/files", map[string]any{"path": "tmp/a.txt", "content": "v2"})
	s.must(http.StatusOK, http.MethodPut, "/files//tmp/a.txt", map[string]any{"content": "v3"})
	s.must(http.StatusCreated, http.MethodPost, "/files", map[string]any{"path": "/deep/er/b.txt", "content": ""})
	if b, _ := os.ReadFile(filepath.Join(dir, "tmp", "a.txt")); string(b) != "v3" {
		t.Errorf("after overwrite: %q", b)
	}

	list := func(path string) []gateway.FileInfo {
		r := s.must(http.StatusOK, http.MethodGet, "/files?path="+path, nil)
		return data[struct {
			Files []gateway.FileInfo `json:"files"`
		}](t, r).Files
	}
	names := func(fs []gateway.FileInfo) []string {
		var out []string
		for _, f := range fs {
			out = append(out, fmt.Sprintf("%s:%v", f.Path, f.IsDir))
		}
		return out
	}
	if got := names(list("/")); !slices.Equal(got, []string{"/deep:true", "/tmp:true"}) {
		t.Errorf("list /: %v", got)
	}
	if got := names(list("/tmp")); !slices.Equal(got, []string{"/tmp/a.txt:false"}) {
		t.Errorf("list /tmp: %v", got)
	}
	r = s.must(http.StatusOK, http.MethodGet, "/files", nil)
	if got := data[struct {
		Path string `json:"path"`
	}](t, r).Path; got != "/" {
		t.Errorf("default list path %q", got)
	}
	s.must(http.StatusBadRequest, http.MethodGet, "/files?path=/tmp/a.txt", nil)
	s.must(http.StatusBadRequest, http.MethodGet, "/files/tmp?content=true", nil)

	// DELETE is 204 for files and directories.
	r = s.must(http.StatusNoContent, http.MethodDelete, "/files/%2Ftmp%2Fa.txt", nil)
	if len(r.body) != 0 {
		t.Errorf("204 with body %q", r.body)
	}
	s.must(http.StatusNotFound, http.MethodDelete, "/files/tmp/a.txt", nil)
	s.must(http.StatusNoContent, http.MethodDelete, "/files//deep", nil)
	if _, err := os.Stat(filepath.Join(dir, "deep")); !os.IsNotExist(err) {
		t.Errorf("deep still there: %v", err)
	}
	s.must(http.StatusBadRequest, http.MethodDelete, "/files//", nil)
	s.must(http.StatusBadRequest, http.MethodPost, "/files", map[string]any{"path": "/", "content": "x"})
	s.must(http.StatusBadRequest, http.MethodPost, "/files", map[string]any{"path": "", "content": "x"})
}

func TestFileSizeLimit(t *testing.T) {
	t.Parallel()
	p := startProvider(t, Config{MaxFileSize: 1000})
	s := newSandbox(t, p, nil)
	s.must(http.StatusCreated, http.MethodPost, "/files", map[string]any{"path": "ok", "content": strings.Repeat("a", 1000)})
	msg := s.must(http.StatusRequestEntityTooLarge, http.MethodPost, "/files", map[string]any{"path": "big", "content": strings.Repeat("a", 1001)}).errorText(t)
	if !strings.Contains(msg, "1000") {
		t.Errorf("error %q", msg)
	}
	if _, err := os.Stat(filepath.Join(s.dir(), "big")); !os.IsNotExist(err) {
		t.Errorf("oversized file written: %v", err)
	}
	// A file grown on disk beyond the limit is not read into a response.
	if err := os.WriteFile(filepath.Join(s.dir(), "grown"), []byte(strings.Repeat("b", 2000)), 0o644); err != nil {
		t.Fatal(err)
	}
	s.must(http.StatusRequestEntityTooLarge, http.MethodGet, "/files/grown?content=true", nil)
}

func TestFilesBatch(t *testing.T) {
	t.Parallel()
	p := startProvider(t, Config{})
	s := newSandbox(t, p, nil)
	dir := s.dir()
	if err := os.WriteFile(filepath.Join(dir, "old.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	type result = gateway.BatchResult
	batch := func(want int, files []map[string]any) []result {
		t.Helper()
		r := s.must(want, http.MethodPost, "/files/batch", map[string]any{"files": files})
		return data[struct {
			Results []result `json:"results"`
		}](t, r).Results
	}

	res := batch(http.StatusOK, []map[string]any{
		{"path": "/b/two.txt", "operation": "write", "content": "first"},
		{"path": "/a.txt", "operation": "write", "content": "A"},
		{"path": "b/two.txt", "operation": "write", "content": "second"}, // same path: last wins
		{"path": "/old.txt", "operation": "delete"},
		{"path": "/never.txt", "operation": "delete"}, // missing: still a success
	})
	var paths []string
	for _, r := range res {
		paths = append(paths, r.Path)
		if !r.Success {
			t.Errorf("%s failed: %s", r.Path, r.Error)
		}
	}
	if !slices.Equal(paths, []string{"/a.txt", "b/two.txt", "/never.txt", "/old.txt"}) {
		t.Errorf("result order %v", paths)
	}
	if res[1].File == nil || res[1].File.Size != int64(len("second")) {
		t.Errorf("write result %+v", res[1])
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "b", "two.txt")); string(b) != "second" {
		t.Errorf("b/two.txt = %q", b)
	}
	if _, err := os.Stat(filepath.Join(dir, "old.txt")); !os.IsNotExist(err) {
		t.Errorf("old.txt: %v", err)
	}

	res = batch(http.StatusMultiStatus, []map[string]any{
		{"path": "/c.txt", "operation": "write", "content": "C"},
		{"path": "../../escape.txt", "operation": "write", "content": "no"},
		{"path": "/d.txt", "operation": "rename"},
	})
	ok := map[string]bool{}
	for _, r := range res {
		ok[r.Path] = r.Success
		if !r.Success && r.Error == "" {
			t.Errorf("%s failed without an error", r.Path)
		}
	}
	if !ok["/c.txt"] || ok["../../escape.txt"] || ok["/d.txt"] || len(res) != 3 {
		t.Errorf("results %+v", res)
	}
	s.must(http.StatusBadRequest, http.MethodPost, "/files/batch", map[string]any{"files": []any{}})
}

func TestFilesConcurrentWritesStayWhole(t *testing.T) {
	t.Parallel()
	p := startProvider(t, Config{})
	s := newSandbox(t, p, nil)
	const writers = 8
	contents := make([]string, writers)
	for i := range contents {
		contents[i] = strings.Repeat(string(rune('a'+i)), 64<<10)
	}
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			for range 5 {
				r, err := tryDo(t, http.MethodPost, s.rec.URL+"/files", s.auth(), map[string]any{"path": "/shared.txt", "content": contents[i]})
				if err != nil || r.status != http.StatusCreated {
					t.Errorf("write: %d %s %v", r.status, r.body, err)
				}
			}
		})
		wg.Go(func() {
			for range 5 {
				r, err := tryDo(t, http.MethodGet, s.rec.URL+"/files/shared.txt?content=true", s.auth(), nil)
				if err != nil {
					t.Error(err)
					return
				}
				if r.status == http.StatusNotFound {
					continue
				}
				var d fileData
				err = json.Unmarshal(r.body, &struct {
					Data *fileData `json:"data"`
				}{&d})
				if err != nil || d.Content == nil || !slices.Contains(contents, *d.Content) {
					t.Errorf("read a torn file (%d bytes)", len(r.body))
				}
			}
		})
	}
	wg.Wait()
	entries, err := os.ReadDir(s.dir())
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
}

// TestFileEscapes tries to leave the sandbox through every operation and
// checks the file system outside it afterwards.
func TestFileEscapes(t *testing.T) {
	t.Parallel()
	p := startProvider(t, Config{})
	s := newSandbox(t, p, nil)
	dir := s.dir()
	outside := t.TempDir()
	secret := filepath.Join(outside, "secret.txt")
	if err := os.WriteFile(secret, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Mkdir(filepath.Join(dir, "sub"), 0o755))
	must(os.Symlink(outside, filepath.Join(dir, "out")))                              // dir link, absolute, outside
	must(os.Symlink(secret, filepath.Join(dir, "outfile")))                           // file link, outside
	must(os.Symlink("../..", filepath.Join(dir, "up")))                               // relative, outside
	must(os.Symlink(filepath.Join(outside, "new.txt"), filepath.Join(dir, "dangle"))) // dangling, outside
	must(os.Symlink("sub", filepath.Join(dir, "inner")))                              // inside: allowed
	must(os.Symlink(filepath.Join(dir, "sub"), filepath.Join(dir, "innerabs")))       // inside, absolute: allowed

	type probe struct {
		method, path string
		body         any
	}
	probes := []probe{
		{"POST", "/files", map[string]any{"path": "../../etc/passwd", "content": "x"}},
		{"POST", "/files", map[string]any{"path": "/a/../../../x", "content": "x"}},
		{"GET", "/files/%2e%2e/%2e%2e/etc/passwd?content=true", nil},
		{"GET", "/files/..%2F..%2Fetc%2Fpasswd?content=true", nil},
		{"GET", "/files/../../etc/passwd?content=true", nil},
		{"GET", "/files//../etc/hostname", nil},
		{"POST", "/files", map[string]any{"path": "/out/new.txt", "content": "x"}},
		{"POST", "/files", map[string]any{"path": "/out/secret.txt", "content": "overwritten"}},
		{"PUT", "/files/outfile", map[string]any{"content": "overwritten"}},
		{"POST", "/files", map[string]any{"path": "/outfile", "content": "overwritten"}},
		{"GET", "/files/outfile?content=true", nil},
		{"GET", "/files/out/secret.txt?content=true", nil},
		{"GET", "/files?path=/out", nil},
		{"GET", "/files?path=/up", nil},
		{"POST", "/files", map[string]any{"path": "/up/x.txt", "content": "x"}},
		{"POST", "/files", map[string]any{"path": "/dangle", "content": "created"}},
		{"DELETE", "/files/out/secret.txt", nil},
		{"DELETE", "/files/%2Fup%2F" + filepath.Base(filepath.Dir(dir)), nil},
		{"POST", "/files", map[string]any{"path": "a\x00b", "content": "x"}},
		{"POST", "/files", map[string]any{"path": "/" + strings.Repeat("a/", 2100), "content": "x"}},
		{"POST", "/run/command", map[string]any{"command": "pwd", "cwd": "/out"}},
		{"POST", "/run/command", map[string]any{"command": "pwd", "cwd": "../.."}},
		{"GET", "/env?file=/out/.env", nil},
		{"POST", "/env?file=../.env", map[string]any{"variables": map[string]string{"A": "1"}}},
		{"POST", "/servers", map[string]any{"slug": "x", "start": "sleep 1", "path": "/out"}},
		{"POST", "/servers", map[string]any{"slug": "y", "start": "sleep 1", "env_file": "../../x.env"}},
	}
	for _, pr := range probes {
		r := s.do(pr.method, pr.path, pr.body)
		if r.status != http.StatusBadRequest {
			t.Errorf("%s %s %v: status %d, want 400: %s", pr.method, pr.path, pr.body, r.status, r.body)
			continue
		}
		msg := r.errorText(t)
		if !strings.Contains(msg, "path") {
			t.Errorf("%s %s: error %q does not name the path problem", pr.method, pr.path, msg)
		}
	}
	r := s.must(http.StatusMultiStatus, http.MethodPost, "/files/batch", map[string]any{"files": []map[string]any{
		{"path": "/out/batch.txt", "operation": "write", "content": "x"},
		{"path": "/outfile", "operation": "write", "content": "x"},
		{"path": "/out/secret.txt", "operation": "delete"},
	}})
	for _, res := range data[struct {
		Results []gateway.BatchResult `json:"results"`
	}](t, r).Results {
		if res.Success {
			t.Errorf("batch %s succeeded", res.Path)
		}
	}

	// Links inside the sandbox work; deleting a link removes the link.
	s.must(http.StatusCreated, http.MethodPost, "/files", map[string]any{"path": "/inner/ok.txt", "content": "ok"})
	s.must(http.StatusCreated, http.MethodPost, "/files", map[string]any{"path": "/innerabs/ok2.txt", "content": "ok"})
	if b, err := os.ReadFile(filepath.Join(dir, "sub", "ok.txt")); err != nil || string(b) != "ok" {
		t.Errorf("write through inner link: %q %v", b, err)
	}
	s.must(http.StatusNoContent, http.MethodDelete, "/files/out", nil)
	s.must(http.StatusNoContent, http.MethodDelete, "/files/outfile", nil)

	// Nothing outside changed.
	var found []string
	must(filepath.WalkDir(outside, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		found = append(found, path)
		return nil
	}))
	if !slices.Equal(found, []string{outside, secret}) {
		t.Errorf("outside tree changed: %v", found)
	}
	if b, _ := os.ReadFile(secret); string(b) != "secret" {
		t.Errorf("secret changed: %q", b)
	}
	for _, name := range []string{"etc", "x", "new.txt"} {
		if _, err := os.Lstat(filepath.Join(filepath.Dir(dir), name)); err == nil {
			t.Errorf("%s created next to the sandbox", name)
		}
	}
}
