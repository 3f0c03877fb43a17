// Package access holds the two rules that decide who may use an HTTP
// endpoint of sandboxq (the API, the dashboard, the worker's listener and
// the local provider):
//
//   - loopback: an address that names only the loopback interface may be
//     served without credentials. "localhost" (in any case) and loopback
//     IPs are loopback; an empty host (":8080", every interface), an
//     unspecified IP and every other host name are not.
//   - bearer tokens: "Authorization: Bearer <token>" (scheme in any case,
//     token trimmed) is compared as a SHA-256 digest with every configured
//     token, in constant time, so neither which token matched nor the
//     length or content of any shows in the timing.
package access

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net"
	"strings"
)

// LoopbackHost reports whether host (a host name or an IP, with or without
// brackets) names only the loopback interface.
func LoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// LoopbackAddr reports whether the host of a host:port address names only
// the loopback interface; a malformed address is an error.
func LoopbackAddr(addr string) (bool, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false, fmt.Errorf("address %q: %w", addr, err)
	}
	return LoopbackHost(host), nil
}

// Digest is the SHA-256 digest of a secret: what the token check compares.
type Digest [sha256.Size]byte

// DigestOf returns the digest of s.
func DigestOf(s string) Digest { return sha256.Sum256([]byte(s)) }

// BearerToken returns the token of an Authorization header value of the
// form "Bearer <token>". ok is false for another scheme, a value without a
// token, or an empty one.
func BearerToken(header string) (token string, ok bool) {
	scheme, tok, _ := strings.Cut(header, " ")
	tok = strings.TrimSpace(tok)
	if !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return "", false
	}
	return tok, true
}

// Match returns the index of the digest in want that token's digest
// equals, or -1. It compares with every digest whatever matched, in
// constant time each.
func Match(token string, want []Digest) int {
	got := DigestOf(token)
	match := -1
	for i := range want {
		if subtle.ConstantTimeCompare(got[:], want[i][:]) == 1 {
			match = i
		}
	}
	return match
}
