//go:build unix

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/sandboxq/sandboxq/internal/redistest"
	"github.com/sandboxq/sandboxq/internal/testutil"
	"github.com/sandboxq/sandboxq/tasks"
)

// attackPage is served from a second loopback origin. It sends the
// command:run of the reported attack twice: as a no-cors fetch with a
// type-less Blob (no preflight, no Content-Type), and as a CORS fetch with
// application/json (preflight first); then it reports what it saw to its
// own origin.
const attackPage = `<!doctype html><title>other origin</title><pre id=out>running</pre>
<script>
(async () => {
  const api = %q, body = JSON.stringify({name: %q, command: %q});
  const out = {};
  try {
    const r = await fetch(api + "/tasks/command:run", {method: "POST", mode: "no-cors", body: new Blob([body])});
    out.nocors = "sent, opaque " + r.type;
  } catch (e) { out.nocors = "error " + e; }
  try {
    const r = await fetch(api + "/tasks/command:run", {method: "POST", headers: {"Content-Type": "application/json"}, body});
    out.cors_status = r.status;
    out.cors_body = await r.text();
  } catch (e) { out.cors_error = String(e); }
  document.getElementById("out").textContent = JSON.stringify(out);
  await fetch("/report", {method: "POST", body: JSON.stringify(out)});
})();
</script>`

// pageReport is what attackPage reports.
type pageReport struct {
	NoCORS     string `json:"nocors"`
	CORSStatus int    `json:"cors_status"`
	CORSBody   string `json:"cors_body"`
	CORSError  string `json:"cors_error"`
}

// originServer serves attackPage on 127.0.0.2 (another origin and another
// site than the worker's 127.0.0.1) and receives the page's report.
type originServer struct {
	srv     *httptest.Server
	reports chan pageReport
	mu      sync.Mutex
	page    string
}

func newOriginServer(t *testing.T) *originServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("cannot listen on 127.0.0.2 (a second loopback address): %v", err)
	}
	o := &originServer{reports: make(chan pageReport, 4)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /", func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		defer o.mu.Unlock()
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, o.page)
	})
	mux.HandleFunc("POST /report", func(w http.ResponseWriter, r *http.Request) {
		var rep pageReport
		if err := json.NewDecoder(r.Body).Decode(&rep); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		o.reports <- rep
	})
	o.srv = &httptest.Server{Listener: l, Config: &http.Server{Handler: mux}}
	o.srv.Start()
	t.Cleanup(o.srv.Close)
	return o
}

func (o *originServer) setPage(apiURL, name, command string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.page = fmt.Sprintf(attackPage, apiURL, name, command)
}

// statusRecorder is a transparent reverse proxy in front of the worker
// (Host, Origin and Sec-Fetch-* pass unchanged) that records the status of
// every answer, since a no-cors response is opaque to the page.
type statusRecorder struct {
	mu  sync.Mutex
	log []string
}

func (s *statusRecorder) start(t *testing.T, target string) string {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ModifyResponse = func(resp *http.Response) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.log = append(s.log, fmt.Sprintf("%s %s %d", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode))
		return nil
	}
	srv := httptest.NewServer(rp)
	t.Cleanup(srv.Close)
	return srv.URL
}

func (s *statusRecorder) answers() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.log...)
}

// runChromium opens url in headless Chromium and waits for the page's
// report.
func runChromium(t *testing.T, bin, url string, o *originServer) pageReport {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin,
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+t.TempDir(), "--virtual-time-budget=10000", "--dump-dom", url)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatalf("chromium: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}()
	select {
	case rep := <-o.reports:
		return rep
	case err := <-done:
		done <- err
		t.Fatalf("chromium exited (%v) before the page reported; DOM:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	case <-ctx.Done():
		t.Fatalf("no report from the page within 90 s; stderr:\n%s", stderr.String())
	}
	return pageReport{}
}

// queueActivity counts every task the default queue has ever held.
func queueActivity(t *testing.T, insp *asynq.Inspector) int {
	t.Helper()
	info, err := insp.GetQueueInfo(tasks.QueueDefault)
	if err != nil {
		return 0 // the queue does not exist: nothing was ever enqueued
	}
	return info.Size + info.Completed + info.Processed
}

var dashboardRE = regexp.MustCompile(`"dashboard":"(http://127\.0\.0\.1:\d+)/`)

// TestBrowserCrossOriginCommandRefused is finding 1 of issue 9 in a real
// browser: a page on another loopback origin POSTs command:run to `worker
// -dev` (no API token) with a no-cors fetch and with a CORS JSON fetch.
// The worker answers 403 or 415, no task is enqueued and no file is
// written. With the page's origin in API_ALLOWED_ORIGINS the JSON fetch
// is answered 202, the task runs and the file appears.
func TestBrowserCrossOriginCommandRefused(t *testing.T) {
	t.Parallel()
	bin := testutil.Chromium(t)
	origin := newOriginServer(t)

	t.Run("untrusted origin", func(t *testing.T) {
		db := redistest.New(t)
		insp := asynq.NewInspectorFromRedisClient(db.Client(t))
		w := startWorker(t, map[string]string{"REDIS_URL": db.URL(), "SANDBOXQ_LOCAL_ROOT": t.TempDir()}, "-dev")
		m := dashboardRE.FindStringSubmatch(w.Logs())
		if m == nil {
			t.Fatalf("no HTTP address in the worker's start-up line:\n%s", w.Logs())
		}
		rec := &statusRecorder{}
		proxy := rec.start(t, m[1])
		marker := filepath.Join(t.TempDir(), "written-by-the-page")
		origin.setPage(proxy+"/api/v1", "browser-victim", "touch "+marker)

		rep := runChromium(t, bin, origin.srv.URL+"/", origin)
		t.Logf("page report: %+v; worker answers: %q", rep, rec.answers())
		var posts []string
		for _, a := range rec.answers() {
			if strings.HasPrefix(a, "POST ") {
				posts = append(posts, a)
			}
		}
		if len(posts) == 0 {
			t.Fatal("the no-cors POST never reached the worker")
		}
		for _, a := range posts {
			if !strings.HasSuffix(a, " 403") && !strings.HasSuffix(a, " 415") {
				t.Errorf("worker answered %q, want 403 or 415", a)
			}
		}
		if rep.CORSStatus == http.StatusAccepted {
			t.Errorf("the CORS fetch was accepted: %+v", rep)
		}
		if n := queueActivity(t, insp); n != 0 {
			t.Fatalf("%d tasks in the default queue, want none", n)
		}
		if _, err := os.Stat(marker); !os.IsNotExist(err) {
			t.Fatalf("the page's command wrote %s (%v)", marker, err)
		}
	})

	t.Run("origin in API_ALLOWED_ORIGINS", func(t *testing.T) {
		db := redistest.New(t)
		insp := asynq.NewInspectorFromRedisClient(db.Client(t))
		w := startWorker(t, map[string]string{"REDIS_URL": db.URL(), "SANDBOXQ_LOCAL_ROOT": t.TempDir(), "API_ALLOWED_ORIGINS": origin.srv.URL}, "-dev")
		m := dashboardRE.FindStringSubmatch(w.Logs())
		if m == nil {
			t.Fatalf("no HTTP address in the worker's start-up line:\n%s", w.Logs())
		}
		marker := filepath.Join(t.TempDir(), "written-by-the-page")
		origin.setPage(m[1]+"/api/v1", "browser-allowed", "touch "+marker)

		rep := runChromium(t, bin, origin.srv.URL+"/", origin)
		t.Logf("page report: %+v", rep)
		if rep.CORSStatus != http.StatusAccepted {
			t.Fatalf("trusted origin's JSON fetch: %+v, want 202", rep)
		}
		var e tasks.Enqueued
		if err := json.Unmarshal([]byte(rep.CORSBody), &e); err != nil || e.ID == "" {
			t.Fatalf("answer %q: %v", rep.CORSBody, err)
		}
		if _, err := insp.GetTaskInfo(e.Queue, e.ID); err != nil {
			t.Fatalf("task %s not in Redis: %v", e.ID, err)
		}
		testutil.Eventually(t, "the allowed page's command to write "+marker, time.Minute, func() bool {
			_, err := os.Stat(marker)
			return err == nil
		})
	})
}

// TestDNSRebindingRefusedByWorker: finding 2 against `worker -dev` with
// DASHBOARD_READONLY=false: a request under a foreign Host (a rebinding
// name that resolves to 127.0.0.1) gets 403 on the registry and on an
// Asynqmon pause, and the queue stays unpaused.
func TestDNSRebindingRefusedByWorker(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	rdb := db.Client(t)
	insp := asynq.NewInspectorFromRedisClient(rdb)
	w := startWorker(t, map[string]string{"REDIS_URL": db.URL(), "DASHBOARD_READONLY": "false"}, "-dev")
	m := dashboardRE.FindStringSubmatch(w.Logs())
	if m == nil {
		t.Fatalf("no HTTP address in the worker's start-up line:\n%s", w.Logs())
	}
	if err := rdb.SAdd(t.Context(), "asynq:queues", tasks.QueueDefault).Err(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ method, path string }{
		{"GET", "/api/sandboxes"},
		{"POST", "/monitoring/api/queues/default:pause"},
		{"DELETE", "/monitoring/api/queues/default/pending_tasks:delete_all"},
	} {
		req, err := http.NewRequestWithContext(t.Context(), c.method, m[1]+c.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = "attacker.example:8080"
		req.Header.Set("Origin", "http://attacker.example:8080")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "SANDBOXQ_ALLOWED_HOSTS") {
			t.Errorf("%s %s with Host attacker.example:8080: %d %s; want 403 naming SANDBOXQ_ALLOWED_HOSTS", c.method, c.path, resp.StatusCode, body)
		}
	}
	if info, err := insp.GetQueueInfo(tasks.QueueDefault); err != nil || info.Paused {
		t.Fatalf("default queue after the attack: %+v, %v", info, err)
	}
}
