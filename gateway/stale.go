package gateway

import "errors"

// IsStaleSandbox reports whether err, from a call to a sandbox's daemon,
// says that the sandbox record the call was made with (its URL and token,
// as find or find-or-create returned them) is out of date, so that the
// sandbox should be looked up again before anything else is concluded:
//
//   - 404: the daemon or the gateway in front of it does not know the
//     sandbox (it was destroyed or replaced; protocol §1.5, §1.6: stale
//     mappings are dropped and a fresh find answers differently).
//   - 401: the token is missing or no longer valid (protocol §2.1), as
//     after the sandbox was replaced under the same name.
//
// 403 is not stale: the daemon answers it to a valid token that may not do
// the operation (a session token on session-token management, protocol
// §2.1; the local provider to a file it may not touch). A fresh lookup
// returns the same kind of token, which would be refused again.
//
// The handlers' sandbox cache and the events watcher both use this one rule.
func IsStaleSandbox(err error) bool {
	return errors.Is(err, ErrNotFound) || errors.Is(err, ErrUnauthorized)
}
