package worker

import (
	"errors"
	"strings"
	"testing"
)

// TestAllowedHostEntries: exact host names and IP literals (with an
// optional port) are accepted and matched without port, brackets, case or
// trailing dot; wildcards and anything else are refused, naming the
// variable.
func TestAllowedHostEntries(t *testing.T) {
	t.Parallel()
	good := map[string]string{
		"app.example.com":      "app.example.com",
		"App.Example.COM.":     "app.example.com",
		"app.example.com:8443": "app.example.com",
		"10.0.0.5":             "10.0.0.5",
		"10.0.0.5:80":          "10.0.0.5",
		"[fd00::1]:8080":       "fd00::1",
		"[fd00::1]":            "fd00::1",
		"fd00::1":              "fd00::1",
		"worker-1":             "worker-1",
	}
	for entry, want := range good {
		g, err := newGuard(HTTPConfig{AllowedHosts: []string{entry}}, nil)
		if err != nil {
			t.Errorf("%q refused: %v", entry, err)
			continue
		}
		if !g.hosts[want] {
			t.Errorf("%q: host %q not allowed", entry, want)
		}
	}
	for _, entry := range []string{"*", "*.example.com", "app.*", "a b", "http://app.example.com", "app.example.com/x",
		"app.example.com:99999", "app.example.com:x", "-app.example.com", "app..example.com", "app_1.example.com", "[app.example.com]", "[10.0.0.5]", "fe80::1%eth0"} {
		_, err := newGuard(HTTPConfig{AllowedHosts: []string{entry}}, nil)
		if err == nil || !strings.Contains(err.Error(), EnvAllowedHosts) || !strings.Contains(err.Error(), "wildcards are not supported") {
			t.Errorf("%q: err = %v, want a refusal naming %s", entry, err, EnvAllowedHosts)
		}
	}
}

// TestAllowedOriginEntries: scheme://host[:port] with an exact host is
// accepted; "*", a wildcard host, a path or user info are refused.
func TestAllowedOriginEntries(t *testing.T) {
	t.Parallel()
	for _, o := range []string{"https://app.example.com", "http://127.0.0.1:5173", "http://[::1]:3000"} {
		g, err := newGuard(HTTPConfig{AllowedOrigins: []string{o}}, nil)
		if err != nil || !g.origins[o] {
			t.Errorf("%q: %v, want it trusted", o, err)
		}
	}
	for _, o := range []string{"*", "https://*.example.com", "https://app.example.com/", "https://u:p@app.example.com", "app.example.com", "null"} {
		_, err := newGuard(HTTPConfig{AllowedOrigins: []string{o}}, nil)
		if err == nil || !strings.Contains(err.Error(), EnvAllowedOrigins) {
			t.Errorf("%q: err = %v, want a refusal naming %s", o, err, EnvAllowedOrigins)
		}
	}
}

// TestValidateChecksHTTPWithoutConnections: Config.Validate, which needs
// no Redis or gateway, refuses a bad DashboardPath, a wildcard host and a
// non-loopback address without AllowedHosts.
func TestValidateChecksHTTPWithoutConnections(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		http HTTPConfig
		want string
	}{
		"dashboard path": {HTTPConfig{DashboardPath: "monitoring"}, "must start with /"},
		"wildcard host":  {HTTPConfig{Addr: "127.0.0.1:0", AllowedHosts: []string{"*"}}, "wildcards are not supported"},
		"not loopback":   {HTTPConfig{Addr: ":0"}, "is not a loopback address"},
	}
	for name, tc := range cases {
		c := Config{HTTP: tc.http}
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Validate() = %v, want it to say %q", name, err, tc.want)
		}
	}
	var ce *ConfigError
	c := Config{HTTP: HTTPConfig{DashboardPath: "monitoring"}}
	if err := c.Validate(); !errors.As(err, &ce) || ce.Field != "HTTP.DashboardPath" {
		t.Errorf("DashboardPath error %v is not a *ConfigError on HTTP.DashboardPath", err)
	}
}
