package worker

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/sandboxq/sandboxq/api"
	"github.com/sandboxq/sandboxq/internal/redistest"
	"github.com/sandboxq/sandboxq/tasks"
)

// TestAPISlowBodyGets408: an enqueue whose body does not arrive within the
// server's body deadline is answered 408 with the API's JSON error, never
// net/http's default 200, and nothing is enqueued.
func TestAPISlowBodyGets408(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t).Client(t)
	a, err := api.New(api.Config{Client: tasks.NewClient(rdb), Redis: rdb, ListenAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	addr := serveTest(t, a, testLimits)

	c := dial(t, addr)
	fmt.Fprint(c, "POST "+api.Prefix+"/tasks/sandbox:ensure HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 10\r\n\r\n{")
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second)) // far above the 300 ms body limit
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer to a slow body: %v", err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("slow body: status %d body %q, want 408", resp.StatusCode, raw)
	}
	var eb struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(raw, &eb); err != nil || !strings.Contains(eb.Error, "did not arrive in time") {
		t.Fatalf("slow body: error body %q (%v)", raw, err)
	}
	insp := asynq.NewInspectorFromRedisClient(rdb)
	for q := range tasks.DefaultQueues {
		if info, err := insp.GetQueueInfo(q); err == nil && info.Size != 0 {
			t.Fatalf("slow body enqueued %d tasks in %s", info.Size, q)
		}
	}
}
