package redisserver

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// startTimeout bounds how long Start waits for redis-server to answer PING.
const startTimeout = 15 * time.Second

// Server is a running redis-server started by Start.
type Server struct {
	// Addr is its loopback host:port.
	Addr string
	// Version is its redis_version.
	Version string
	stop    func()
}

// Stop stops the server (SIGINT, then SIGKILL after 5 s) and removes its
// directory.
func (s *Server) Stop() { s.stop() }

func Start(bin string, databases int) (*Server, error) {
	dir, err := os.MkdirTemp("", "redisserver-")
	if err != nil {
		return nil, fmt.Errorf("create redis-server directory: %w", err)
	}
	var errs []error
	// A free port can be taken by someone else between our probe and
	// redis-server's bind; try a few.
	for range 5 {
		port, err := FreePort()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		srv, err := launch(bin, dir, port, databases)
		if err == nil {
			stop := srv.stop
			srv.stop = func() {
				stop()
				os.RemoveAll(dir)
			}
			return srv, nil
		}
		errs = append(errs, err)
	}
	os.RemoveAll(dir)
	return nil, fmt.Errorf("start redis-server: %w", errors.Join(errs...))
}

// FreePort returns a loopback port that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// launch starts redis-server on port and waits until it answers.
func launch(bin, dir string, port, databases int) (*Server, error) {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cmd := exec.Command(bin,
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--databases", strconv.Itoa(databases),
		"--dir", dir,
	)
	var out SyncBuffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.Dir = dir
	SetDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("run %s: %w", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}

	version, err := WaitReady(addr, cmd.Process.Pid, exited)
	if err != nil {
		_ = cmd.Process.Kill()
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
		}
		return nil, fmt.Errorf("redis-server on %s: %w; output:\n%s", addr, err, out.String())
	}
	return &Server{Addr: addr, Version: version, stop: stop}, nil
}

// WaitReady pings addr until the redis-server with process id pid answers,
// the process exits, or startTimeout passes. It returns the server version.
func WaitReady(addr string, pid int, exited <-chan error) (string, error) {
	rdb := redis.NewClient(&redis.Options{
		Addr:        addr,
		DialTimeout: 500 * time.Millisecond,
		ReadTimeout: 500 * time.Millisecond,
		MaxRetries:  -1,
		PoolSize:    1,
	})
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		if lastErr = rdb.Ping(ctx).Err(); lastErr == nil {
			info, err := rdb.Info(ctx, "server").Result()
			if err != nil {
				return "", fmt.Errorf("INFO server: %w", err)
			}
			fields := ParseInfo(info)
			if fields["process_id"] != strconv.Itoa(pid) {
				return "", fmt.Errorf("port answered by another process (process_id %q, ours %d)", fields["process_id"], pid)
			}
			return fields["redis_version"], nil
		}
		select {
		case err := <-exited:
			return "", fmt.Errorf("exited before answering PING: %v", err)
		case <-ctx.Done():
			return "", fmt.Errorf("no answer to PING within %v: %v", startTimeout, lastErr)
		case <-tick.C:
		}
	}
}

// ParseInfo turns the text of INFO into a map.
func ParseInfo(info string) map[string]string {
	fields := make(map[string]string)
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":")
		if ok && !strings.HasPrefix(k, "#") {
			fields[k] = v
		}
	}
	return fields
}

// SyncBuffer is a bytes.Buffer safe for the exec copier goroutine and a
// reader. It keeps at most 64 KiB.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := 64<<10 - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
