package proc

import (
	"os"
	"strings"
)

// HostLocale returns the entries of the host environment a sandbox process
// may see: LANG, LANGUAGE, LC_* and TZ. They say how to format text and
// time, never hold credentials, and without them tools fall back to the C
// locale and UTC. Everything else of the host environment stays out: it
// may hold the credentials of the process that embeds the provider.
func HostLocale() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k == "LANG" || k == "LANGUAGE" || k == "TZ" || strings.HasPrefix(k, "LC_") {
			env = append(env, kv)
		}
	}
	return env
}
