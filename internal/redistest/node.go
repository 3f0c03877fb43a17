package redistest

import (
	"context"
	"errors"
	"fmt"
	"github.com/sandboxq/sandboxq/internal/redisserver"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// topologyTimeout bounds how long a cluster or sentinel set-up may take to
// become ready, and how long the failover waits may take.
const topologyTimeout = 60 * time.Second

// Node is one redis-server process of a cluster or sentinel set-up, owned
// by the test that started it.
type Node struct {
	Addr string // 127.0.0.1:port
	Port int
	Pid  int

	cmd    *exec.Cmd
	out    *redisserver.SyncBuffer
	exited chan struct{}
}

// Kill sends SIGKILL to the node and waits until it has exited: what a
// crashed host looks like to its peers (no shutdown save, no goodbye).
func (n *Node) Kill() {
	_ = n.cmd.Process.Kill()
	<-n.exited
}

// Alive reports whether the process is still running.
func (n *Node) Alive() bool {
	select {
	case <-n.exited:
		return false
	default:
		return true
	}
}

// Output returns what the process wrote so far (capped at 64 KiB).
func (n *Node) Output() string { return n.out.String() }

// Client returns a plain client of this one node (no cluster redirects, no
// failover), closed when the test ends.
func (n *Node) Client(tb testing.TB) *redis.Client {
	tb.Helper()
	c := n.client()
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

func (n *Node) client() *redis.Client {
	return redis.NewClient(&redis.Options{Addr: n.Addr, MaxRetries: -1, DialTimeout: time.Second,
		ReadTimeout: 2 * time.Second, PoolSize: 2})
}

// requireBinaries returns the paths of redis-server and redis-cli, or skips
// the test when they are missing (fails it when SANDBOXQ_REQUIRE_REDIS is
// true).
func requireBinaries(tb testing.TB) (server, cli string) {
	tb.Helper()
	server, errS := exec.LookPath("redis-server")
	cli, errC := exec.LookPath("redis-cli")
	if err := errors.Join(errS, errC); err != nil {
		if v, _ := strconv.ParseBool(strings.TrimSpace(os.Getenv(RequireEnv))); v {
			tb.Fatalf("%s is set but the Redis binaries are missing (%v); install redis-server and redis-tools", RequireEnv, err)
		}
		tb.Skipf("Redis binaries missing (%v); set %s=1 to make this a failure", err, RequireEnv)
	}
	return server, cli
}

// startNode starts `redis-server <args...> --port P` on a free loopback
// port in its own directory under dir, waits until it answers PING, and
// kills it when the test ends. configFile, if not empty, is written to
// <nodeDir>/redis.conf with {port} replaced and passed as the first
// argument (sentinels need a writable config file).
func startNode(tb testing.TB, bin, dir, configFile string, args ...string) *Node {
	tb.Helper()
	var errs []error
	for range 5 {
		port, err := redisserver.FreePort()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		n, err := tryNode(bin, dir, port, configFile, args)
		if err == nil {
			tb.Cleanup(func() {
				_ = n.cmd.Process.Kill()
				<-n.exited
			})
			return n
		}
		errs = append(errs, err)
	}
	tb.Fatalf("redistest: start redis-server: %v", errors.Join(errs...))
	return nil
}

func tryNode(bin, dir string, port int, configFile string, args []string) (*Node, error) {
	nodeDir := fmt.Sprintf("%s/%d", dir, port)
	if err := os.MkdirAll(nodeDir, 0o755); err != nil {
		return nil, err
	}
	var argv []string
	if configFile != "" {
		path := nodeDir + "/redis.conf"
		text := strings.ReplaceAll(configFile, "{port}", strconv.Itoa(port))
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			return nil, err
		}
		argv = append(argv, path)
	}
	argv = append(argv, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", nodeDir)
	argv = append(argv, args...)
	cmd := exec.Command(bin, argv...)
	n := &Node{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Port: port,
		cmd: cmd, out: &redisserver.SyncBuffer{}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr, cmd.Dir = n.out, n.out, nodeDir
	redisserver.SetDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("run %s: %w", bin, err)
	}
	n.Pid = cmd.Process.Pid
	exited := make(chan error, 1)
	go func() {
		err := cmd.Wait()
		exited <- err
		close(n.exited)
	}()
	if _, err := redisserver.WaitReady(n.Addr, n.Pid, exited); err != nil {
		_ = cmd.Process.Kill()
		<-n.exited
		return nil, fmt.Errorf("redis-server on %s: %w; output:\n%s", n.Addr, err, n.out.String())
	}
	return n, nil
}

// poll calls cond every 50 ms until it returns nil, and returns its last
// error if that does not happen within timeout.
func poll(ctx context.Context, timeout time.Duration, cond func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not within %v: %w", timeout, err)
		case <-tick.C:
		}
	}
}

// fastReplication are the server options that make a replica's first full
// sync start at once (Redis 7 waits 5 s for more replicas by default).
var fastReplication = []string{
	"--save", "", "--appendonly", "no",
	"--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0",
}
