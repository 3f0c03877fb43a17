package dashboard

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/sandboxq/sandboxq/internal/access"
	"github.com/sandboxq/sandboxq/internal/secret"
)

// Auth holds the dashboard's credentials: HTTP basic (Username and
// Password) and/or a bearer token. When both are set either is accepted.
// The zero value means no authentication, which is allowed on loopback
// addresses only.
type Auth struct {
	Username    string
	Password    secret.Secret
	BearerToken secret.Secret
}

// Enabled reports whether any credential is configured.
func (a Auth) Enabled() bool { return a.basic() || !a.BearerToken.IsZero() }

func (a Auth) basic() bool { return a.Username != "" || !a.Password.IsZero() }

// Validate reports a half-configured basic auth.
func (a Auth) Validate() error {
	switch {
	case a.Username != "" && a.Password.IsZero():
		return errors.New("dashboard: auth: a username needs a password")
	case a.Username == "" && !a.Password.IsZero():
		return errors.New("dashboard: auth: a password needs a username")
	case strings.Contains(a.Username, ":"):
		return errors.New("dashboard: auth: the username must not contain ':' (HTTP basic auth cannot carry it)")
	}
	return nil
}

// CheckListen is the start-up rule for an address the dashboard is served
// on: a non-loopback address (including an empty host such as ":8080",
// which listens on every interface, and any host name other than
// "localhost") needs credentials. It also rejects half-configured basic
// auth and malformed addresses.
func CheckListen(addr string, auth Auth) error {
	if err := auth.Validate(); err != nil {
		return err
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("dashboard: listen address %q: %w", addr, err)
	}
	if auth.Enabled() || access.LoopbackHost(host) {
		return nil
	}
	why := "not a loopback address"
	if ip := net.ParseIP(strings.Trim(host, "[]")); host == "" || (ip != nil && ip.IsUnspecified()) {
		why = "every interface"
	}
	return fmt.Errorf("dashboard: refusing to serve on %s without credentials (%s): "+
		"configure a username and password or a bearer token, or listen on a loopback address such as 127.0.0.1", addr, why)
}

// authenticator checks requests against Auth. Secrets are compared as
// SHA-256 digests with subtle.ConstantTimeCompare (the bearer token through
// internal/access), so neither their content nor their length shows in the
// timing.
type authenticator struct {
	enabled  bool
	user     access.Digest
	password access.Digest
	basic    bool
	tokens   []access.Digest // the bearer token, if any
	realm    string
}

func newAuthenticator(a Auth) *authenticator {
	au := &authenticator{enabled: a.Enabled(), realm: "sandboxq"}
	if a.basic() {
		au.basic = true
		au.user = access.DigestOf(a.Username)
		au.password = access.DigestOf(a.Password.Reveal())
	}
	if !a.BearerToken.IsZero() {
		au.tokens = []access.Digest{access.DigestOf(a.BearerToken.Reveal())}
	}
	return au
}

// allowed reports whether r carries valid credentials (always true when
// auth is disabled).
func (au *authenticator) allowed(r *http.Request) bool {
	if !au.enabled {
		return true
	}
	h := r.Header.Get("Authorization")
	scheme, _, _ := strings.Cut(h, " ")
	switch {
	case len(au.tokens) > 0 && strings.EqualFold(scheme, "Bearer"):
		tok, ok := access.BearerToken(h)
		return ok && access.Match(tok, au.tokens) >= 0
	case au.basic && strings.EqualFold(scheme, "Basic"):
		user, pass, ok := r.BasicAuth()
		if !ok {
			return false
		}
		gu, gp := access.DigestOf(user), access.DigestOf(pass)
		// Both comparisons always run.
		okUser := subtle.ConstantTimeCompare(gu[:], au.user[:])
		okPass := subtle.ConstantTimeCompare(gp[:], au.password[:])
		return okUser&okPass == 1
	}
	return false
}

// challenge writes a 401 naming the accepted schemes.
func (au *authenticator) challenge(w http.ResponseWriter) {
	if au.basic {
		w.Header().Add("WWW-Authenticate", `Basic realm="`+au.realm+`", charset="UTF-8"`)
	}
	if len(au.tokens) > 0 {
		w.Header().Add("WWW-Authenticate", `Bearer realm="`+au.realm+`"`)
	}
	http.Error(w, "authentication required", http.StatusUnauthorized)
}

// fromLoopback reports whether r arrived on a loopback local address. It is
// true when the local address is unknown or not TCP (a Unix socket).
func fromLoopback(r *http.Request) bool {
	addr, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok {
		return true
	}
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return true
	}
	return tcp.IP.IsLoopback()
}
