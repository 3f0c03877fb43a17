package gateway

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Sentinel errors. ErrNotFound, ErrUnauthorized and ErrForbidden match an
// *APIError with status 404, 401 and 403 through errors.Is.
var (
	ErrNotFound     = errors.New("gateway: not found")
	ErrUnauthorized = errors.New("gateway: unauthorized")
	ErrForbidden    = errors.New("gateway: forbidden")

	// ErrStillCreating is returned by Find and FindOrCreate when the gateway
	// kept answering status "creating" for longer than the creating poll
	// allows (WithCreatingPoll). It is retryable.
	ErrStillCreating = errors.New("gateway: sandbox still creating")

	// ErrRequestTimeout is returned when the per-request timeout
	// (WithTimeout) expired before the caller's context did. It is a
	// transport failure and retryable, unlike the caller's own deadline.
	ErrRequestTimeout = errors.New("gateway: request timed out")
)

// maxErrorMessage bounds APIError.Message.
const maxErrorMessage = 1 << 10

// APIError is a non-2xx answer of the gateway or a daemon (or, rarely, a 2xx
// answer whose envelope says it failed).
type APIError struct {
	Op         string // operation, e.g. "find_or_create" or "daemon.start_server"
	Method     string
	URL        string // sanitized: no userinfo, credentials in the query redacted
	StatusCode int
	Message    string        // server's message: JSON "error", else "message", else the body text
	RequestID  string        // X-Request-Id response header
	RetryAfter time.Duration // from the Retry-After header; 0 if absent
}

// Error implements error.
func (e *APIError) Error() string {
	var b strings.Builder
	b.WriteString("gateway: ")
	if e.Op != "" {
		b.WriteString(e.Op)
		b.WriteString(": ")
	}
	if e.Method != "" || e.URL != "" {
		b.WriteString(strings.TrimSpace(e.Method + " " + e.URL))
		b.WriteString(": ")
	}
	b.WriteString(strconv.Itoa(e.StatusCode))
	if text := http.StatusText(e.StatusCode); text != "" {
		b.WriteString(" ")
		b.WriteString(text)
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	if e.RequestID != "" {
		b.WriteString(" (request id ")
		b.WriteString(e.RequestID)
		b.WriteString(")")
	}
	return b.String()
}

// Is makes errors.Is(err, ErrNotFound) true for a 404, ErrUnauthorized for a
// 401 and ErrForbidden for a 403.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.StatusCode == http.StatusNotFound
	case ErrUnauthorized:
		return e.StatusCode == http.StatusUnauthorized
	case ErrForbidden:
		return e.StatusCode == http.StatusForbidden
	}
	return false
}

// Retryable reports whether the same request may succeed later: 408, 425,
// 429 and every 5xx.
func (e *APIError) Retryable() bool {
	switch {
	case e.StatusCode == http.StatusRequestTimeout,
		e.StatusCode == http.StatusTooEarly,
		e.StatusCode == http.StatusTooManyRequests:
		return true
	case e.StatusCode >= 500 && e.StatusCode <= 599:
		return true
	}
	return false
}

// IsRetryable classifies an error returned by this package: an *APIError
// by its status (APIError.Retryable), ErrStillCreating, transport failures
// and ErrRequestTimeout are retryable; the caller's own cancellation or
// deadline (context.Canceled, context.DeadlineExceeded), bad input and an
// undecodable 2xx body are not.
func IsRetryable(err error) bool {
	if err == nil {
		return false
	}
	if te, ok := errors.AsType[*transportError](err); ok {
		return te.retryable()
	}
	if ae, ok := errors.AsType[*APIError](err); ok {
		return ae.Retryable()
	}
	switch {
	case errors.Is(err, ErrStillCreating), errors.Is(err, ErrRequestTimeout):
		return true
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return false
	}
	var ne net.Error
	return errors.As(err, &ne)
}

// RetryAfter returns the Retry-After of a wrapped *APIError, else 0.
func RetryAfter(err error) time.Duration {
	if ae, ok := errors.AsType[*APIError](err); ok {
		return ae.RetryAfter
	}
	return 0
}

// transportError is a request that got no HTTP answer (connection refused,
// reset, TLS failure, per-request timeout, body cut short). Its message
// carries the sanitized URL, never the one net/http puts in *url.Error.
type transportError struct {
	op, method, url string
	err             error
}

func (e *transportError) Error() string {
	return fmt.Sprintf("gateway: %s: %s %s: %v", e.op, e.method, e.url, e.err)
}

func (e *transportError) Unwrap() error { return e.err }

// retryable is false only for failures a retry cannot fix: an untrusted
// or invalid server certificate.
func (e *transportError) retryable() bool {
	var (
		unknownAuthority x509.UnknownAuthorityError
		hostname         x509.HostnameError
		invalid          x509.CertificateInvalidError
		verify           *tls.CertificateVerificationError
	)
	switch {
	case errors.As(e.err, &unknownAuthority), errors.As(e.err, &hostname),
		errors.As(e.err, &invalid), errors.As(e.err, &verify):
		return false
	}
	return true
}

// newAPIError builds the error for a non-2xx response. body is at most
// maxErrorBody bytes; secrets are values to cut out of the message should
// the server echo them.
func newAPIError(op, method, sanitizedURL string, resp *http.Response, body []byte, secrets []string, now time.Time) *APIError {
	return &APIError{
		Op:         op,
		Method:     method,
		URL:        sanitizedURL,
		StatusCode: resp.StatusCode,
		Message:    redactAll(errorMessage(body), secrets),
		RequestID:  resp.Header.Get("X-Request-Id"),
		RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), now),
	}
}

// errorMessage takes the message of an error body: JSON "error" (a string,
// or an object with "message"), then "message", else the trimmed text.
func errorMessage(body []byte) string {
	var m struct {
		Error   json.RawMessage `json:"error"`
		Message json.RawMessage `json:"message"`
	}
	if json.Unmarshal(body, &m) == nil {
		if s := jsonText(m.Error); s != "" {
			return truncate(s)
		}
		if s := jsonText(m.Message); s != "" {
			return truncate(s)
		}
	}
	return truncate(strings.TrimSpace(string(body)))
}

// jsonText returns a JSON string's value, or the "message" of a JSON
// object, or "".
func jsonText(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return strings.TrimSpace(s)
	}
	var o struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(raw, &o) == nil {
		return strings.TrimSpace(o.Message)
	}
	return ""
}

// truncate makes s valid UTF-8 and at most maxErrorMessage bytes plus an
// ellipsis.
func truncate(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= maxErrorMessage {
		return s
	}
	cut := maxErrorMessage
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func redactAll(s string, secrets []string) string {
	for _, v := range secrets {
		if v != "" {
			s = strings.ReplaceAll(s, v, "[redacted]")
		}
	}
	return s
}

// parseRetryAfter reads delay-seconds or an HTTP-date. Negative, past or
// malformed values give 0.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		if n > math.MaxInt64/int64(time.Second) {
			return time.Duration(math.MaxInt64)
		}
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}
