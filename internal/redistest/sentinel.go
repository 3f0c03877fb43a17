package redistest

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// SentinelMaster is the master name NewSentinel's sentinels monitor.
const SentinelMaster = "sandboxq"

// SentinelDownAfter is the down-after-milliseconds of NewSentinel's
// sentinels: a dead primary is noticed about this long after it dies.
const SentinelDownAfter = 1000 * time.Millisecond

// Sentinel is a Sentinel-managed primary with two replicas and three
// sentinels, every one a redis-server process on loopback owned by the test
// that started it.
type Sentinel struct {
	// Data are the primary and its two replicas, in start order (the first
	// is the primary until a failover).
	Data []*Node
	// Sentinels are the three `redis-server --sentinel` processes.
	Sentinels []*Node
}

// NewSentinel starts a primary, two replicas of it and three sentinels
// monitoring it (quorum 2, down-after-milliseconds 1 s, failover-timeout
// 5 s), waits until both replicas are in sync and every sentinel sees the
// two replicas and the two other sentinels, and tears everything down when
// the test ends. It skips the test when the Redis binaries are missing,
// unless SANDBOXQ_REQUIRE_REDIS is true.
func NewSentinel(tb testing.TB) *Sentinel {
	tb.Helper()
	server, _ := requireBinaries(tb)
	dir := tb.TempDir()
	s := &Sentinel{}
	primary := startNode(tb, server, dir, "", fastReplication...)
	s.Data = append(s.Data, primary)
	for range 2 {
		args := append([]string{"--replicaof", "127.0.0.1", strconv.Itoa(primary.Port)}, fastReplication...)
		s.Data = append(s.Data, startNode(tb, server, dir, "", args...))
	}
	conf := fmt.Sprintf(`sentinel monitor %[1]s 127.0.0.1 %[2]d 2
sentinel down-after-milliseconds %[1]s %[3]d
sentinel failover-timeout %[1]s 5000
sentinel parallel-syncs %[1]s 2
`, SentinelMaster, primary.Port, SentinelDownAfter.Milliseconds())
	for range 3 {
		s.Sentinels = append(s.Sentinels, startNode(tb, server, dir, conf, "--sentinel"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), topologyTimeout)
	defer cancel()
	if err := s.WaitHealthy(ctx); err != nil {
		tb.Fatalf("redistest: sentinel set-up not ready: %v", err)
	}
	return s
}

// URL returns the set-up in the REDIS_URL form the binaries accept:
// redis-sentinel://h1:p1,h2:p2,h3:p3?master=sandboxq.
func (s *Sentinel) URL() string {
	return "redis-sentinel://" + strings.Join(s.sentinelAddrs(), ",") + "?master=" + SentinelMaster
}

func (s *Sentinel) sentinelAddrs() []string {
	addrs := make([]string, len(s.Sentinels))
	for i, n := range s.Sentinels {
		addrs[i] = n.Addr
	}
	return addrs
}

// Options returns go-redis failover options for the set-up.
func (s *Sentinel) Options() *redis.FailoverOptions {
	return &redis.FailoverOptions{MasterName: SentinelMaster, SentinelAddrs: s.sentinelAddrs()}
}

// Client returns a failover client (it asks the sentinels for the primary
// and follows failovers), closed when the test ends.
func (s *Sentinel) Client(tb testing.TB) redis.UniversalClient {
	tb.Helper()
	rdb := redis.NewFailoverClient(s.Options())
	tb.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// Node returns the data node listening on addr, or nil.
func (s *Sentinel) Node(addr string) *Node {
	for _, n := range s.Data {
		if n.Addr == addr {
			return n
		}
	}
	return nil
}

// Primary returns the data node the first live sentinel names as primary.
func (s *Sentinel) Primary(ctx context.Context) (*Node, error) {
	for _, sn := range s.Sentinels {
		if !sn.Alive() {
			continue
		}
		sc := redis.NewSentinelClient(&redis.Options{Addr: sn.Addr, MaxRetries: -1, DialTimeout: time.Second})
		hp, err := sc.GetMasterAddrByName(ctx, SentinelMaster).Result()
		sc.Close()
		if err != nil {
			return nil, fmt.Errorf("SENTINEL get-master-addr-by-name on %s: %w", sn.Addr, err)
		}
		addr := net.JoinHostPort(hp[0], hp[1])
		if n := s.Node(addr); n != nil {
			return n, nil
		}
		return nil, fmt.Errorf("sentinel %s names unknown primary %s", sn.Addr, addr)
	}
	return nil, fmt.Errorf("no live sentinel")
}

// WaitHealthy polls until the primary every live sentinel names is alive
// and a primary, every live replica's link to it is up, and every live
// sentinel knows the live replicas and the other live sentinels. After the
// primary is killed this is "failover finished".
func (s *Sentinel) WaitHealthy(ctx context.Context) error {
	return poll(ctx, topologyTimeout, func(ctx context.Context) error {
		p, err := s.Primary(ctx)
		if err != nil {
			return err
		}
		if !p.Alive() {
			return fmt.Errorf("sentinels still name the dead primary %s", p.Addr)
		}
		liveData, liveSentinels := 0, 0
		for _, n := range s.Data {
			if n.Alive() {
				liveData++
			}
		}
		for _, n := range s.Sentinels {
			if n.Alive() {
				liveSentinels++
			}
		}
		if err := s.checkData(ctx, p, liveData-1); err != nil {
			return err
		}
		return s.checkSentinels(ctx, p, liveSentinels-1)
	})
}

func (s *Sentinel) checkData(ctx context.Context, primary *Node, replicas int) error {
	for _, n := range s.Data {
		if !n.Alive() {
			continue
		}
		rdb := n.client()
		text, err := rdb.Info(ctx, "replication").Result()
		rdb.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", n.Addr, err)
		}
		repl := parseInfo(text)
		switch {
		case n == primary && repl["role"] != "master":
			return fmt.Errorf("primary %s has role %s", n.Addr, repl["role"])
		case n == primary && repl["connected_slaves"] != strconv.Itoa(replicas):
			return fmt.Errorf("primary %s has %s replicas, want %d", n.Addr, repl["connected_slaves"], replicas)
		case n != primary && (repl["role"] != "slave" || repl["master_port"] != strconv.Itoa(primary.Port) || repl["master_link_status"] != "up"):
			return fmt.Errorf("replica %s: role %s of port %s, link %s", n.Addr, repl["role"], repl["master_port"], repl["master_link_status"])
		}
	}
	return nil
}

func (s *Sentinel) checkSentinels(ctx context.Context, primary *Node, others int) error {
	for _, sn := range s.Sentinels {
		if !sn.Alive() {
			continue
		}
		sc := redis.NewSentinelClient(&redis.Options{Addr: sn.Addr, MaxRetries: -1, DialTimeout: time.Second})
		m, err := sc.Master(ctx, SentinelMaster).Result()
		sc.Close()
		if err != nil {
			return fmt.Errorf("sentinel %s: %w", sn.Addr, err)
		}
		if m["port"] != strconv.Itoa(primary.Port) || strings.Contains(m["flags"], "down") {
			return fmt.Errorf("sentinel %s sees master port %s flags %s", sn.Addr, m["port"], m["flags"])
		}
		if m["num-other-sentinels"] != strconv.Itoa(others) {
			return fmt.Errorf("sentinel %s knows %s other sentinels, want %d", sn.Addr, m["num-other-sentinels"], others)
		}
	}
	return nil
}

// FlushAll empties the primary (FLUSHALL, replicated to the replicas).
func (s *Sentinel) FlushAll(ctx context.Context) error {
	p, err := s.Primary(ctx)
	if err != nil {
		return err
	}
	rdb := p.client()
	defer rdb.Close()
	return rdb.FlushAll(ctx).Err()
}
