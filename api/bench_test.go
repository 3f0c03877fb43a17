package api

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"runtime"
	"testing"

	"github.com/sandboxq/sandboxq/tasks"
)

// BenchmarkEnqueue compares enqueueing command:run through tasks.Client in
// process with POST /api/v1/tasks/command:run over loopback HTTP (keep-alive
// connections, bearer auth), against the same Redis in the same run, with
// 8 concurrent producers per CPU. Both report req/s.
//
//	go test -run '^$' -bench Enqueue ./api
func BenchmarkEnqueue(b *testing.B) {
	tb := setup(b, nil)
	p := tasks.CommandRun{Project: tasks.Project{Namespace: "bench", Name: "shop"}, Command: "npm test", Env: map[string]string{"CI": "1"}}
	body, err := json.Marshal(p)
	if err != nil {
		b.Fatal(err)
	}
	ctx := b.Context()

	b.Run("client", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(8)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := tb.client.Enqueue(ctx, p); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
	})

	b.Run("http", func(b *testing.B) {
		hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8 * runtime.GOMAXPROCS(0)}}
		defer hc.CloseIdleConnections()
		url := tb.base + "/tasks/" + tasks.TypeCommandRun
		b.ReportAllocs()
		b.SetParallelism(8)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
				if err != nil {
					b.Error(err)
					return
				}
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer "+testToken)
				resp, err := hc.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusAccepted {
					b.Errorf("status %d", resp.StatusCode)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
	})
}
