package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestCancelledRequestIsAnswered: a request whose context has ended before
// the handler answers (the server ends it when a body read times out) gets
// an error status with the API's JSON error, never net/http's default 200
// with an empty body.
func TestCancelledRequestIsAnswered(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	for _, idem := range []string{"", "key-1"} {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		req := httptest.NewRequestWithContext(ctx, http.MethodPost, Prefix+"/tasks/sandbox:ensure", strings.NewReader(`{"name":"shop"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+testToken)
		if idem != "" {
			req.Header.Set("Idempotency-Key", idem)
		}
		rec := httptest.NewRecorder()
		b.api.ServeHTTP(rec, req)
		var eb errorBody
		if rec.Code < 400 || json.Unmarshal(rec.Body.Bytes(), &eb) != nil || eb.Error == "" {
			t.Errorf("Idempotency-Key %q: cancelled request answered %d %q, want an error status and message", idem, rec.Code, rec.Body.String())
		}
	}
}
