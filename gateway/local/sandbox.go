package local

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/sandboxq/sandboxq/gateway"
	"github.com/sandboxq/sandboxq/gateway/local/internal/proc"
	"github.com/sandboxq/sandboxq/internal/secret"
)

// sandbox is one sandbox: a directory, a token, managed servers, running
// commands and WebSocket connections.
type sandbox struct {
	p         *Provider
	id        string
	namespace string
	name      string
	token     secret.Secret
	dir       string // symlink-free, inside p.root
	fsRoot    *os.Root
	url       string
	created   time.Time
	metadata  map[string]any
	envs      map[string]string // CreateOptions.envs: base env of commands and servers

	ctx    context.Context // cancelled by destroy
	cancel context.CancelFunc

	files pathLocks
	// cmdWG counts running commands; destroy waits for it.
	cmdWG sync.WaitGroup
	// serverOps serialises server mutations (start/stop/restart/delete) so
	// that an idempotent start cannot race itself; it is never held by
	// process callbacks.
	serverOps sync.Mutex

	mu            sync.Mutex // guards everything below
	destroyed     bool
	servers       map[string]*managedServer
	cmds          map[int]struct{} // pids of running commands
	conns         map[*wsConn]struct{}
	signalsActive bool
}

func (p *Provider) newSandbox(namespace, name string, opts gateway.CreateOptions) (*sandbox, error) {
	id := "sbx_" + randHex(8)
	dir := filepath.Join(p.root, id)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create sandbox directory: %w", err)
	}
	fsRoot, err := os.OpenRoot(dir)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("open sandbox directory: %w", err)
	}
	ctx, cancel := context.WithCancel(p.ctx)
	s := &sandbox{
		p:         p,
		id:        id,
		namespace: namespace,
		name:      name,
		token:     secret.New("sbt_" + randHex(24)),
		dir:       dir,
		fsRoot:    fsRoot,
		url:       p.base + "/s/" + id,
		created:   time.Now().UTC(),
		metadata:  maps.Clone(opts.Metadata),
		envs:      maps.Clone(opts.Envs),
		ctx:       ctx,
		cancel:    cancel,
		servers:   make(map[string]*managedServer),
		cmds:      make(map[int]struct{}),
		conns:     make(map[*wsConn]struct{}),
	}
	return s, nil
}

func (s *sandbox) record() *gateway.Sandbox {
	return &gateway.Sandbox{
		SandboxID: s.id,
		URL:       s.url,
		Token:     s.token.Reveal(),
		Provider:  "local",
		Metadata:  s.metadata,
		Name:      s.name,
		Namespace: s.namespace,
		Status:    gateway.SandboxReady,
	}
}

func (s *sandbox) view() SandboxView {
	return SandboxView{
		ID:        s.id,
		Namespace: s.namespace,
		Name:      s.name,
		URL:       s.url,
		Dir:       s.dir,
		Token:     s.token,
		CreatedAt: s.created,
		PIDs:      s.pids(),
	}
}

// pids lists the live processes of the sandbox's servers and commands.
func (s *sandbox) pids() []int {
	s.mu.Lock()
	var servers []*proc.Server
	for _, ms := range s.servers {
		if ms.srv != nil {
			servers = append(servers, ms.srv)
		}
	}
	cmds := slices.Collect(maps.Keys(s.cmds))
	s.mu.Unlock()
	var out []int
	for _, pgid := range cmds {
		out = append(out, groupMembers(pgid)...)
	}
	for _, srv := range servers {
		out = append(out, srv.PIDs()...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// destroy stops every process of the sandbox, closes its WebSockets and,
// when removeDir is set, deletes its directory. The sandbox must already
// be unreachable through the provider's maps.
func (s *sandbox) destroy(removeDir bool) error {
	s.mu.Lock()
	if s.destroyed {
		s.mu.Unlock()
		return nil
	}
	s.destroyed = true
	s.mu.Unlock()

	// Commands are killed through their context; servers are stopped
	// through proc, which escalates to SIGKILL. Taking serverOps first
	// lets a start in progress finish, so its server is stopped too.
	s.cancel()
	s.serverOps.Lock()
	s.mu.Lock()
	servers := slices.Collect(maps.Values(s.servers))
	conns := slices.Collect(maps.Keys(s.conns))
	s.mu.Unlock()
	var errs []error
	var wg sync.WaitGroup
	var emu sync.Mutex
	for _, ms := range servers {
		wg.Go(func() {
			if err := ms.stopAndWait(); err != nil {
				emu.Lock()
				errs = append(errs, fmt.Errorf("stop server %q: %w", ms.slug, err))
				emu.Unlock()
			}
		})
	}
	wg.Wait()
	s.serverOps.Unlock()
	s.p.events.sandboxDestroyed(s.id)
	for _, c := range conns {
		c.close()
	}
	// Commands still running end once their process group is killed; wait
	// for them to leave so no process outlives the sandbox.
	s.waitCommands()
	_ = s.fsRoot.Close()
	if removeDir {
		if err := os.RemoveAll(s.dir); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove sandbox directory: %w", err))
		}
	}
	s.p.log.Debug("sandbox destroyed", "sandbox_id", s.id)
	return errors.Join(errs...)
}

// destroySandbox removes the sandbox from the provider and destroys it.
func (p *Provider) destroySandbox(id string) (bool, error) {
	p.mu.Lock()
	s := p.sandboxes[id]
	if s != nil {
		delete(p.sandboxes, id)
		k := nameKey{s.namespace, s.name}
		if s.name != "" && p.byName[k] == s {
			delete(p.byName, k)
		}
	}
	p.mu.Unlock()
	if s == nil {
		return false, nil
	}
	return true, s.destroy(true)
}
