package gateway

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestAPIError_FromResponse(t *testing.T) {
	t.Parallel()
	c, mux := setup(t)
	future := time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat)
	mux.HandleFunc("GET /v1/sandbox/{id}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Request-Id", "req-"+r.PathValue("id"))
		switch r.PathValue("id") {
		case "seconds":
			w.Header().Set("Retry-After", "7")
			writeJSON(w, 429, `{"success":false,"error":"slow down"}`)
		case "date":
			w.Header().Set("Retry-After", future)
			writeJSON(w, 503, `{"message":"maintenance"}`)
		case "text":
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(502)
			_, _ = w.Write([]byte("  upstream exploded \n"))
		case "huge":
			w.WriteHeader(500)
			_, _ = w.Write([]byte(strings.Repeat("é", 1<<20))) // 2 MiB
		}
	})
	ctx := t.Context()

	_, err := c.Get(ctx, "seconds")
	ae, ok := errors.AsType[*APIError](err)
	if !ok {
		t.Fatalf("err = %v, want *APIError", err)
	}
	want := APIError{
		Op: "get", Method: "GET", URL: strings.TrimSuffix(c.base.String(), "/") + "/v1/sandbox/seconds",
		StatusCode: 429, Message: "slow down", RequestID: "req-seconds", RetryAfter: 7 * time.Second,
	}
	if *ae != want {
		t.Errorf("APIError = %+v\nwant       %+v", *ae, want)
	}
	wantMsg := "gateway: get: GET " + want.URL + ": 429 Too Many Requests: slow down (request id req-seconds)"
	if ae.Error() != wantMsg {
		t.Errorf("Error() = %q\nwant      %q", ae.Error(), wantMsg)
	}
	if !IsRetryable(err) || RetryAfter(fmt.Errorf("task: %w", err)) != 7*time.Second {
		t.Errorf("IsRetryable = %v, RetryAfter = %v", IsRetryable(err), RetryAfter(err))
	}

	_, err = c.Get(ctx, "date")
	ra := RetryAfter(err)
	if ra <= 80*time.Second || ra > 90*time.Second {
		t.Errorf("Retry-After date %s gave %v, want about 90s", future, ra)
	}
	if ae, _ := errors.AsType[*APIError](err); ae.Message != "maintenance" || ae.StatusCode != 503 {
		t.Errorf("APIError = %+v", ae)
	}

	_, err = c.Get(ctx, "text")
	if ae, _ := errors.AsType[*APIError](err); ae.Message != "upstream exploded" || ae.RetryAfter != 0 {
		t.Errorf("text body: APIError = %+v", ae)
	}

	_, err = c.Get(ctx, "huge")
	ae, _ = errors.AsType[*APIError](err)
	if ae == nil || len(ae.Message) > maxErrorMessage+len("…") || !strings.HasSuffix(ae.Message, "é…") {
		t.Errorf("huge body: message of %d bytes ending %q", len(ae.Message), ae.Message[max(0, len(ae.Message)-8):])
	}
}

func TestErrorMessage(t *testing.T) {
	t.Parallel()
	for body, want := range map[string]string{
		`{"success":false,"error":"boom"}`:           "boom",
		`{"error":"  padded  ","message":"second"}`:  "padded",
		`{"message":"only message"}`:                 "only message",
		`{"error":{"message":"nested","code":"E1"}}`: "nested",
		`{"error":"","message":"fallback"}`:          "fallback",
		`{"success":false}`:                          `{"success":false}`,
		"plain text\n":                               "plain text",
		"":                                           "",
		"\xff\xfebad utf8":                           "\uFFFDbad utf8",
	} {
		if got := errorMessage([]byte(body)); got != want {
			t.Errorf("errorMessage(%q) = %q, want %q", body, got, want)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 4, 1, 10, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"":                                  0,
		"0":                                 0,
		"-5":                                0,
		"120":                               2 * time.Minute,
		" 3 ":                               3 * time.Second,
		"99999999999999999999":              0, // not an int64: falls through to date parsing, fails
		"9999999999999":                     time.Duration(1<<63 - 1),
		"Wed, 01 Apr 2026 10:00:30 GMT":     30 * time.Second,
		"Wed, 01 Apr 2026 09:59:00 GMT":     0,
		"Wednesday, 01-Apr-26 10:01:00 GMT": time.Minute,
		"soon":                              0,
	} {
		if got := parseRetryAfter(in, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestAPIError_IsAndRetryable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		status             int
		notFound, unauth   bool
		forbidden, retries bool
	}{
		{400, false, false, false, false},
		{401, false, true, false, false},
		{403, false, false, true, false},
		{404, true, false, false, false},
		{408, false, false, false, true},
		{409, false, false, false, false},
		{413, false, false, false, false},
		{422, false, false, false, false},
		{425, false, false, false, true},
		{429, false, false, false, true},
		{500, false, false, false, true},
		{501, false, false, false, true},
		{502, false, false, false, true},
		{503, false, false, false, true},
		{504, false, false, false, true},
		{599, false, false, false, true},
		{302, false, false, false, false},
	} {
		var err error = fmt.Errorf("wrapped: %w", &APIError{StatusCode: tc.status})
		if errors.Is(err, ErrNotFound) != tc.notFound || errors.Is(err, ErrUnauthorized) != tc.unauth ||
			errors.Is(err, ErrForbidden) != tc.forbidden || IsRetryable(err) != tc.retries {
			t.Errorf("%d: Is(NotFound)=%v Is(Unauthorized)=%v Is(Forbidden)=%v IsRetryable=%v",
				tc.status, errors.Is(err, ErrNotFound), errors.Is(err, ErrUnauthorized),
				errors.Is(err, ErrForbidden), IsRetryable(err))
		}
	}
}

// TestIsRetryable drives real calls into each failure and classifies them.
func TestIsRetryable(t *testing.T) {
	t.Parallel()
	c, mux := setup(t, WithTimeout(50*time.Millisecond))
	mux.HandleFunc("GET /v1/sandbox/{id}", func(w http.ResponseWriter, r *http.Request) {
		switch r.PathValue("id") {
		case "hang":
			<-r.Context().Done()
		case "garbage":
			writeJSON(w, 200, `{"success":true,"data":[1,2]}`)
		case "unavailable":
			writeJSON(w, 503, `{"success":false,"error":"later"}`)
		case "cut":
			// Promise a longer body than is sent, then drop the connection.
			w.Header().Set("Content-Length", "1000")
			w.WriteHeader(200)
			_, _ = w.Write([]byte(`{"success":true,`))
			panic(http.ErrAbortHandler)
		default:
			writeJSON(w, 400, `{"success":false,"error":"bad id"}`)
		}
	})
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	deadClient, err := NewClient(deadURL)
	if err != nil {
		t.Fatal(err)
	}

	canceled, cancel := context.WithCancel(t.Context())
	cancel()
	expired, cancel2 := context.WithDeadline(t.Context(), time.Now().Add(-time.Second))
	defer cancel2()
	// The caller's deadline firing while the request hangs.
	short, cancel3 := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel3()
	cShort, err := NewClient(c.base.String(), WithTimeout(time.Minute))
	if err != nil {
		t.Fatal(err)
	}

	get := func(cl *Client, ctx context.Context, id string) error {
		_, err := cl.Get(ctx, id)
		return err
	}
	for _, tc := range []struct {
		name  string
		err   error
		want  bool
		check func(error) bool
	}{
		{"nil", nil, false, nil},
		{"transport: closed server", get(deadClient, t.Context(), "x"), true, nil},
		{"per-request timeout", get(c, t.Context(), "hang"), true, func(e error) bool {
			return errors.Is(e, ErrRequestTimeout) && !errors.Is(e, context.DeadlineExceeded)
		}},
		{"body cut short", get(c, t.Context(), "cut"), true, nil},
		{"503", get(c, t.Context(), "unavailable"), true, nil},
		{"400", get(c, t.Context(), "bad"), false, nil},
		{"undecodable 2xx", get(c, t.Context(), "garbage"), false, nil},
		{"canceled ctx", get(c, canceled, "hang"), false, func(e error) bool { return errors.Is(e, context.Canceled) }},
		{"expired ctx", get(c, expired, "hang"), false, func(e error) bool { return errors.Is(e, context.DeadlineExceeded) }},
		{"caller deadline mid-request", get(cShort, short, "hang"), false, func(e error) bool {
			return errors.Is(e, context.DeadlineExceeded) && !errors.Is(e, ErrRequestTimeout)
		}},
		{"canceled on closed server", get(deadClient, canceled, "x"), false, func(e error) bool { return errors.Is(e, context.Canceled) }},
		{"bad input", get(c, t.Context(), ""), false, nil},
		{"still creating", fmt.Errorf("x: %w", ErrStillCreating), true, nil},
		{"plain context.Canceled", context.Canceled, false, nil},
		{"unknown authority", &transportError{op: "get", err: x509.UnknownAuthorityError{}}, false, nil},
		{"other error", errors.New("something"), false, nil},
	} {
		if got := IsRetryable(tc.err); got != tc.want {
			t.Errorf("%s: IsRetryable(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
		if tc.check != nil && !tc.check(tc.err) {
			t.Errorf("%s: unexpected error %v", tc.name, tc.err)
		}
		if RetryAfter(tc.err) != 0 {
			t.Errorf("%s: RetryAfter = %v", tc.name, RetryAfter(tc.err))
		}
	}
}
