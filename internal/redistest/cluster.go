package redistest

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sandboxq/sandboxq/internal/redisurl"
)

// ClusterNodeTimeout is the cluster-node-timeout of NewCluster's nodes: a
// primary is failed over about this long (plus an election) after it dies.
const ClusterNodeTimeout = 1000 * time.Millisecond

// Cluster is a Redis Cluster of 3 primaries with 1 replica each, every node
// a redis-server process on loopback owned by the test that started it.
type Cluster struct {
	// Nodes are all six nodes, in start order; which are primaries changes
	// with failovers (see Primaries).
	Nodes []*Node
}

// NewCluster starts six `redis-server --cluster-enabled yes` nodes on free
// loopback ports, joins them with `redis-cli --cluster create
// --cluster-replicas 1`, waits until every live node reports
// cluster_state:ok with all 16384 slots served and every replica is in sync,
// and tears it all down when the test ends. It skips the test when the
// Redis binaries are missing, unless SANDBOXQ_REQUIRE_REDIS is true.
func NewCluster(tb testing.TB) *Cluster {
	tb.Helper()
	server, cli := requireBinaries(tb)
	dir := tb.TempDir()
	c := &Cluster{}
	args := append([]string{
		"--cluster-enabled", "yes",
		"--cluster-config-file", "nodes.conf",
		"--cluster-node-timeout", strconv.Itoa(int(ClusterNodeTimeout.Milliseconds())),
		// A replica may be promoted however long it was cut off: the test
		// measures what that costs instead of refusing to fail over.
		"--cluster-replica-validity-factor", "0",
	}, fastReplication...)
	for range 6 {
		c.Nodes = append(c.Nodes, startNode(tb, server, dir, "", args...))
	}
	create := []string{"--cluster", "create"}
	for _, n := range c.Nodes {
		create = append(create, n.Addr)
	}
	create = append(create, "--cluster-replicas", "1", "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), topologyTimeout)
	defer cancel()
	if out, err := exec.CommandContext(ctx, cli, create...).CombinedOutput(); err != nil {
		tb.Fatalf("redistest: redis-cli --cluster create: %v\n%s", err, out)
	}
	if err := c.WaitHealthy(ctx); err != nil {
		tb.Fatalf("redistest: cluster not ready: %v", err)
	}
	return c
}

// URL returns the cluster in the REDIS_URL form the binaries accept: a
// comma-separated list of redis:// node URLs.
func (c *Cluster) URL() string {
	parts := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		parts[i] = "redis://" + n.Addr
	}
	return strings.Join(parts, ",")
}

// Options returns go-redis cluster options for every node, with the slot
// map reload interval the binaries use (redisurl.ClusterStateReloadInterval).
func (c *Cluster) Options() *redis.ClusterOptions {
	o := &redis.ClusterOptions{ClusterStateReloadInterval: redisurl.ClusterStateReloadInterval}
	for _, n := range c.Nodes {
		o.Addrs = append(o.Addrs, n.Addr)
	}
	return o
}

// Client returns a cluster client, closed when the test ends.
func (c *Cluster) Client(tb testing.TB) redis.UniversalClient {
	tb.Helper()
	rdb := redis.NewClusterClient(c.Options())
	tb.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// Node returns the node listening on addr, or nil.
func (c *Cluster) Node(addr string) *Node {
	for _, n := range c.Nodes {
		if n.Addr == addr {
			return n
		}
	}
	return nil
}

// Primaries returns the nodes that currently serve slots as primaries,
// as the first live node sees it.
func (c *Cluster) Primaries(ctx context.Context) ([]*Node, error) {
	for _, n := range c.Nodes {
		if !n.Alive() {
			continue
		}
		rdb := n.client()
		text, err := rdb.ClusterNodes(ctx).Result()
		rdb.Close()
		if err != nil {
			return nil, fmt.Errorf("CLUSTER NODES on %s: %w", n.Addr, err)
		}
		var out []*Node
		for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
			f := strings.Fields(line)
			// <id> <ip:port@cport> <flags> <master> <ping> <pong> <epoch> <state> <slots...>
			if len(f) < 9 || !strings.Contains(f[2], "master") || strings.Contains(f[2], "fail") {
				continue
			}
			addr, _, _ := strings.Cut(f[1], "@")
			if node := c.Node(addr); node != nil {
				out = append(out, node)
			}
		}
		return out, nil
	}
	return nil, errors.New("no live cluster node")
}

// PrimaryFor returns the node that currently serves key's slot.
func (c *Cluster) PrimaryFor(ctx context.Context, key string) (*Node, error) {
	rdb := redis.NewClusterClient(c.Options())
	defer rdb.Close()
	m, err := rdb.MasterForKey(ctx, key)
	if err != nil {
		return nil, err
	}
	if n := c.Node(m.Options().Addr); n != nil {
		return n, nil
	}
	return nil, fmt.Errorf("slot of %q served by unknown node %s", key, m.Options().Addr)
}

// WaitHealthy polls every live node until each reports cluster_state:ok
// with all slots assigned and ok, and every live replica's link to its
// primary is up. After a primary is killed this is "failover finished".
func (c *Cluster) WaitHealthy(ctx context.Context) error {
	return poll(ctx, topologyTimeout, func(ctx context.Context) error {
		for _, n := range c.Nodes {
			if !n.Alive() {
				continue
			}
			if err := nodeHealthy(ctx, n); err != nil {
				return fmt.Errorf("%s: %w", n.Addr, err)
			}
		}
		return nil
	})
}

func nodeHealthy(ctx context.Context, n *Node) error {
	rdb := n.client()
	defer rdb.Close()
	text, err := rdb.ClusterInfo(ctx).Result()
	if err != nil {
		return err
	}
	info := parseInfo(text)
	for k, want := range map[string]string{"cluster_state": "ok", "cluster_slots_assigned": "16384", "cluster_slots_ok": "16384"} {
		if info[k] != want {
			return fmt.Errorf("%s is %q, want %q", k, info[k], want)
		}
	}
	text, err = rdb.Info(ctx, "replication").Result()
	if err != nil {
		return err
	}
	repl := parseInfo(text)
	if repl["role"] == "slave" && repl["master_link_status"] != "up" {
		return fmt.Errorf("replica link to %s:%s is %q", repl["master_host"], repl["master_port"], repl["master_link_status"])
	}
	return nil
}

// FlushAll empties every primary (FLUSHALL, replicated to the replicas).
func (c *Cluster) FlushAll(ctx context.Context) error {
	rdb := redis.NewClusterClient(c.Options())
	defer rdb.Close()
	return rdb.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		return m.FlushAll(ctx).Err()
	})
}
