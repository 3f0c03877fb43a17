package secret

import (
	"strings"
	"unicode"
)

// credentialParts are substrings of lower-cased names whose values are
// credentials.
var credentialParts = []string{
	"token", "password", "passwd", "secret", "apikey", "api_key", "api-key",
	"authorization", "credential", "private_key", "privatekey", "cookie",
}

// credentialWords are whole words of a name (split at punctuation and
// camelCase) that mark a credential: "x-api-key", "authKey", "db_pass".
var credentialWords = map[string]bool{"key": true, "auth": true, "pass": true, "pwd": true}

// IsCredentialName reports whether a key of a JSON object, a header or a
// metadata entry named name is likely to hold a credential, so that its
// value must be redacted wherever it is shown. It errs on the side of
// redacting: "auth", "x-api-key", "accessToken", "db_password" are
// credentials; "author", "monkey" and "keyboard" are not.
func IsCredentialName(name string) bool {
	lower := strings.ToLower(name)
	for _, p := range credentialParts {
		if strings.Contains(lower, p) {
			return true
		}
	}
	for _, w := range words(name) {
		if credentialWords[w] {
			return true
		}
	}
	return false
}

// words splits name at every rune that is not a letter or digit and before
// an upper-case letter that follows a lower-case one; words are lower case.
func words(name string) []string {
	var out []string
	var cur []rune
	prevLower := false
	flush := func() {
		if len(cur) > 0 {
			out = append(out, strings.ToLower(string(cur)))
			cur = cur[:0]
		}
	}
	for _, r := range name {
		switch {
		case !unicode.IsLetter(r) && !unicode.IsDigit(r):
			flush()
			prevLower = false
			continue
		case unicode.IsUpper(r) && prevLower:
			flush()
		}
		cur = append(cur, r)
		prevLower = unicode.IsLower(r)
	}
	flush()
	return out
}
