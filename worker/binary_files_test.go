package worker_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sandboxq/sandboxq/gateway"
	"github.com/sandboxq/sandboxq/gateway/local"
	"github.com/sandboxq/sandboxq/handlers"
	"github.com/sandboxq/sandboxq/internal/testutil"
	"github.com/sandboxq/sandboxq/tasks"
)

// sandboxDir returns the host directory of the project's sandbox.
func (b *testBundle) sandboxDir(t *testing.T, p tasks.Project) string {
	t.Helper()
	for _, v := range b.lp.Sandboxes() {
		if v.Namespace == p.Namespace && v.Name == p.Name {
			return v.Dir
		}
	}
	t.Fatalf("no sandbox for %s/%s", p.Namespace, p.Name)
	return ""
}

// noStages fails if a staged or temporary file of a binary write is left
// in dir.
func noStages(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".sandboxq-") {
			t.Errorf("%s left behind in %s", e.Name(), dir)
		}
	}
}

// TestBinaryFileByteForByte writes 1 MiB of random bytes (certainly not
// UTF-8) with the Go client next to a text file, and finds the same bytes
// (sha256) in the sandbox directory of the local provider, written through
// the file API and a command only, with no stage left behind.
func TestBinaryFileByteForByte(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.startWorker(t, nil)
	data := testutil.RandomBytes(t, 1<<20)
	p := proj("binary")
	es, err := b.client.WriteFiles(t.Context(), tasks.FilesWrite{Project: p, Files: []tasks.File{
		tasks.BinaryFile("/app/public/blob.bin", data),
		{Path: "/app/public/index.html", Content: "<img src=blob.bin>"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	var res handlers.FilesResult
	b.mustSucceed(t, b.ok(es[0], nil), &res)
	if res.Written != 2 || res.Bytes != int64(len(data))+18 {
		t.Errorf("result %+v: want 2 written, %d bytes (decoded)", res, len(data)+18)
	}
	dir := filepath.Join(b.sandboxDir(t, p), "app", "public")
	got, err := os.ReadFile(filepath.Join(dir, "blob.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatalf("sandbox file: %d bytes, sha256 differs from the %d bytes sent", len(got), len(data))
	}
	noStages(t, dir)
	var commands int
	for _, o := range b.obs.Snapshot() {
		if o.SandboxID != "" && strings.HasSuffix(o.Path, "/run/command") {
			commands++
		}
	}
	if commands != 1 {
		t.Errorf("%d run/command calls, want 1 (the decode of the one binary file)", commands)
	}
}

// failFirstDecode fails the first POST …/run/command with a transport
// error before it reaches the provider; everything else passes.
type failFirstDecode struct {
	next   http.RoundTripper
	failed atomic.Bool
}

func (f *failFirstDecode) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/run/command") && f.failed.CompareAndSwap(false, true) {
		return nil, errors.New("connection reset by test")
	}
	return f.next.RoundTrip(r)
}

// TestBinaryFileRetryResumes: the decode of a binary file fails once in
// transit; the task retries and writes only what is still pending (the
// text file is not sent again), and the file arrives intact.
func TestBinaryFileRetryResumes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rt := &failFirstDecode{next: http.DefaultTransport}
	lp, gw := testutil.Provider(t, local.Config{Observe: b.obs.Add}, gateway.WithHTTPClient(&http.Client{Transport: rt}))
	b.lp, b.gw = lp, gw
	b.startWorker(t, nil)
	data := testutil.RandomBytes(t, 64<<10)
	p := proj("binary-retry")
	es, err := b.client.WriteFiles(t.Context(), tasks.FilesWrite{Project: p, Files: []tasks.File{
		{Path: "a.txt", Content: "text"},
		tasks.BinaryFile("img/logo.png", data),
	}})
	if err != nil {
		t.Fatal(err)
	}
	var res handlers.FilesResult
	st := b.mustSucceed(t, b.ok(es[0], nil), &res)
	if !rt.failed.Load() || st.Retried != 1 {
		t.Fatalf("injected failure %v, retried %d: want one failed decode and one retry", rt.failed.Load(), st.Retried)
	}
	if res.Written != 2 || len(res.Pending) != 0 || res.Bytes != int64(len(data))+4 {
		t.Errorf("result %+v: want 2 written, %d bytes, nothing pending", res, len(data)+4)
	}
	var batches int
	for _, o := range b.obs.Snapshot() {
		if strings.HasSuffix(o.Path, "/files/batch") {
			batches++
		}
	}
	if batches != 2 {
		t.Errorf("%d batch calls, want 2 (the first attempt, then the pending binary file)", batches)
	}
	root := b.sandboxDir(t, p)
	got, err := os.ReadFile(filepath.Join(root, "img", "logo.png"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("logo.png: %d bytes, err %v; want the %d bytes sent", len(got), err, len(data))
	}
	noStages(t, filepath.Join(root, "img"))
}

// TestBinaryFileOntoDirectoryFails: a binary file whose path is an existing
// directory is refused for good (not moved into the directory), and the
// stage is removed.
func TestBinaryFileOntoDirectoryFails(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.startWorker(t, nil)
	p := proj("binary-dir")
	b.mustSucceed(t, b.ok(b.client.Enqueue(t.Context(), tasks.FilesWrite{Project: p, Files: []tasks.File{{Path: "/d/keep.txt", Content: "k"}}})), nil)
	tf := b.mustFail(t, b.ok(b.client.Enqueue(t.Context(), tasks.FilesWrite{Project: p, Files: []tasks.File{tasks.BinaryFile("/d", []byte{0xff, 0x00})}})))
	if !strings.Contains(tf.LastErr, "d is a directory") {
		t.Errorf("error %q does not say /d is a directory", tf.LastErr)
	}
	root := b.sandboxDir(t, p)
	ents, err := os.ReadDir(filepath.Join(root, "d"))
	if err != nil || len(ents) != 1 {
		t.Errorf("/d holds %d entries (err %v), want only keep.txt", len(ents), err)
	}
	noStages(t, root)
}

// TestManyBinaryFilesFewCommands: 600 binary files, with absolute and
// relative paths and awkward names, are decoded by a few commands, not one
// each; the one whose target is a directory fails alone and every other
// file arrives intact.
func TestManyBinaryFilesFewCommands(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.startWorker(t, nil)
	p := proj("binary-many")
	b.mustSucceed(t, b.ok(b.client.Enqueue(t.Context(), tasks.FilesWrite{Project: p, Files: []tasks.File{{Path: "/app/dir/keep.txt", Content: "k"}}})), nil)
	want := map[string][]byte{}
	var files []tasks.File
	add := func(path string, data []byte) {
		want[path] = data
		files = append(files, tasks.BinaryFile(path, data))
	}
	for i := range 300 {
		add(fmt.Sprintf("/app/icons/i-%d.bin", i), testutil.RandomBytes(t, 64+i))
		add(fmt.Sprintf("rel/i-%d.bin", i), testutil.RandomBytes(t, 64+i))
	}
	add("/app/it's -odd.bin", testutil.RandomBytes(t, 10))
	add("-lead/x.bin", testutil.RandomBytes(t, 10))
	files = append(files, tasks.BinaryFile("/app/dir", []byte{0xff}))
	before := countCommands(b.obs.Snapshot())
	tf := b.mustFail(t, b.ok(b.client.Enqueue(t.Context(), tasks.FilesWrite{Project: p, Files: files})))
	var res handlers.FilesResult
	if err := jsonUnmarshal(tf.Result, &res); err != nil {
		t.Fatal(err)
	}
	if res.Written != len(want) || len(res.Failed) != 1 || res.Failed[0].Path != "/app/dir" || len(res.Pending) != 0 {
		t.Fatalf("result written %d, failed %+v, pending %v; want %d written and /app/dir failed", res.Written, res.Failed, res.Pending, len(want))
	}
	n := countCommands(b.obs.Snapshot()) - before
	if n != 2 {
		t.Errorf("%d decode commands for %d files, want 2 (one for absolute paths, one for relative ones)", n, len(files))
	}
	t.Logf("%d files decoded by %d commands", len(files), n)
	root := b.sandboxDir(t, p)
	for path, data := range want {
		got, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(strings.TrimPrefix(path, "/"))))
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%s: %d bytes (err %v), want the %d sent", path, len(got), err, len(data))
		}
	}
	for _, dir := range []string{"app", "app/icons", "rel", "-lead", "app/dir"} {
		noStages(t, filepath.Join(root, dir))
	}
}

func countCommands(obs []local.Observation) int {
	n := 0
	for _, o := range obs {
		if strings.HasSuffix(o.Path, "/run/command") {
			n++
		}
	}
	return n
}
