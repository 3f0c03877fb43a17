package local

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/sandboxq/sandboxq/gateway/local/internal/proc"
)

// baseEnv is the environment every command and server of the sandbox
// starts from: PATH (Config.Path), HOME (the sandbox directory), TMPDIR
// (the sandbox's /tmp, created if missing) and the host's locale and time
// zone (proc.HostLocale). Nothing else of the host environment is passed
// on: it may hold the credentials of the process that embeds the provider
// (Redis password, API tokens, the provider's key). The sandbox's envs and
// the request's variables are added on top by the caller.
func (s *sandbox) baseEnv() (map[string]string, error) {
	// Created through the sandbox's os.Root, so a "tmp" symlink pointing
	// out of the sandbox is not followed.
	if err := s.fsRoot.Mkdir("tmp", 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("create the sandbox's /tmp: %w", err)
	}
	tmp := filepath.Join(s.dir, "tmp")
	vars := map[string]string{"PATH": s.p.path, "HOME": s.dir, "TMPDIR": tmp}
	for _, kv := range proc.HostLocale() {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	return vars, nil
}
