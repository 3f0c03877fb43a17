package access

import "testing"

func TestLoopbackHost(t *testing.T) {
	cases := map[string]bool{
		"localhost": true, "LocalHost": true, "127.0.0.1": true, "127.1.2.3": true,
		"::1": true, "[::1]": true,
		"": false, "0.0.0.0": false, "::": false, "10.0.0.1": false,
		"example.com": false, "localhost.example.com": false, "[::2]": false,
	}
	for host, want := range cases {
		if got := LoopbackHost(host); got != want {
			t.Errorf("LoopbackHost(%q) = %v, want %v", host, got, want)
		}
	}
}

func TestLoopbackAddr(t *testing.T) {
	cases := map[string]bool{
		"127.0.0.1:8080": true, "localhost:0": true, "[::1]:80": true,
		":8080": false, "0.0.0.0:80": false, "192.168.1.2:80": false,
	}
	for addr, want := range cases {
		got, err := LoopbackAddr(addr)
		if err != nil || got != want {
			t.Errorf("LoopbackAddr(%q) = %v, %v; want %v, nil", addr, got, err, want)
		}
	}
	for _, bad := range []string{"127.0.0.1", "", "[::1"} {
		if _, err := LoopbackAddr(bad); err == nil {
			t.Errorf("LoopbackAddr(%q) accepted a malformed address", bad)
		}
	}
}

func TestBearerToken(t *testing.T) {
	ok := map[string]string{
		"Bearer abc": "abc", "bearer abc": "abc", "BEARER  abc ": "abc",
	}
	for h, want := range ok {
		if got, found := BearerToken(h); !found || got != want {
			t.Errorf("BearerToken(%q) = %q, %v; want %q, true", h, got, found, want)
		}
	}
	for _, h := range []string{"", "Bearer", "Bearer ", "Bearer   ", "Basic abc", "Token abc", "Bearerabc"} {
		if got, found := BearerToken(h); found {
			t.Errorf("BearerToken(%q) = %q, true; want no token", h, got)
		}
	}
}

func TestMatch(t *testing.T) {
	want := []Digest{DigestOf("first"), DigestOf("second"), DigestOf("third")}
	for i, tok := range []string{"first", "second", "third"} {
		if got := Match(tok, want); got != i {
			t.Errorf("Match(%q) = %d, want %d", tok, got, i)
		}
	}
	for _, tok := range []string{"", "firs", "first ", "fourth"} {
		if got := Match(tok, want); got != -1 {
			t.Errorf("Match(%q) = %d, want -1", tok, got)
		}
	}
	if got := Match("first", nil); got != -1 {
		t.Errorf("Match against no tokens = %d, want -1", got)
	}
}
