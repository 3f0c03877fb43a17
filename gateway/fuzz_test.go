package gateway

import (
	"net/url"
	"path"
	"strings"
	"testing"
	"time"
)

// FuzzFilesPath checks that an accepted file path reaches the daemon as
// exactly its cleaned form, with no segment a URL would resolve on the way.
func FuzzFilesPath(f *testing.F) {
	for _, s := range []string{"/tmp/a.txt", "src/a b.ts", "../x", "/a/../../b", "a%2Fb", "/", "ü/?#", "a//b/./c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		rel, err := filesPath("fuzz", p)
		if err != nil {
			return
		}
		esc, ok := strings.CutPrefix(rel, "files/")
		if !ok {
			t.Fatalf("filesPath(%q) = %q", p, rel)
		}
		segs := strings.Split(esc, "/")
		for i, s := range segs {
			if s == "." || s == ".." {
				t.Fatalf("filesPath(%q) = %q has a dot segment", p, rel)
			}
			u, err := url.PathUnescape(s)
			if err != nil {
				t.Fatalf("filesPath(%q) = %q: bad escape: %v", p, rel, err)
			}
			segs[i] = u
		}
		if got := strings.Join(segs, "/"); got != path.Clean(p) {
			t.Fatalf("filesPath(%q) decodes to %q, want %q", p, got, path.Clean(p))
		}
	})
}

// FuzzErrorParsing checks that any error body and Retry-After value gives a
// bounded message and a non-negative delay without panicking.
func FuzzErrorParsing(f *testing.F) {
	f.Add([]byte(`{"error":"x"}`), "5")
	f.Add([]byte(`{"error":{"message":"y"}}`), "Wed, 01 Apr 2026 10:00:30 GMT")
	f.Add([]byte("\xff\xfe"), "-1")
	f.Fuzz(func(t *testing.T, body []byte, retryAfter string) {
		msg := errorMessage(body)
		if len(msg) > maxErrorMessage+len("…") {
			t.Fatalf("message of %d bytes", len(msg))
		}
		if d := parseRetryAfter(retryAfter, time.Date(2026, 4, 1, 10, 0, 0, 0, time.UTC)); d < 0 {
			t.Fatalf("parseRetryAfter(%q) = %v", retryAfter, d)
		}
	})
}
