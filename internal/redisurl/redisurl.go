// Package redisurl parses the Redis URLs the sandboxq binaries accept
// (REDIS_URL, --redis-url) into a go-redis client.
//
// Errors and Target.Where never contain a password: net/url puts the whole
// URL into its errors, so those are unwrapped first.
package redisurl

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// Default is used when no URL is configured.
const Default = "redis://127.0.0.1:6379"

// Target is a parsed Redis URL: how to connect and, for messages, where
// to (addresses only, never credentials).
type Target struct {
	// Where describes the server(s) for messages: addresses, never
	// credentials.
	Where string
	open  func() redis.UniversalClient
}

// Open returns a new client for the target. It does not dial.
func (t *Target) Open() redis.UniversalClient { return t.open() }

// Parse accepts
//
//	redis://[user:password@]host[:port][/db][?options]    (rediss:// for TLS)
//	unix://[user:password@]/path/to/redis.sock[?db=N]
//	redis-sentinel://[:password@]host1:port[,host2:port...][?master=name]
//	redis://host1:port,redis://host2:port,...             (a cluster: a list of nodes)
//
// Errors never repeat the URL, which may hold a password.
func Parse(raw string) (*Target, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return nil, errors.New("empty Redis URL")
	}
	if isNodeList(raw) {
		return parseClusterList(raw)
	}
	scheme, _, ok := strings.Cut(raw, "://")
	if !ok {
		return nil, errors.New("Redis URL has no scheme (want redis://host:port)")
	}
	switch scheme {
	case "redis", "rediss", "unix":
		opt, err := redis.ParseURL(raw)
		if err != nil {
			return nil, fmt.Errorf("invalid Redis URL: %s", redactURLError(err))
		}
		if opt.DialerRetries == 0 {
			opt.DialerRetries = 2 // fail fast when nothing listens
		}
		return &Target{Where: opt.Addr, open: func() redis.UniversalClient { return redis.NewClient(opt) }}, nil
	case "redis-sentinel":
		connOpt, err := asynq.ParseRedisURI(raw)
		if err != nil {
			return nil, fmt.Errorf("invalid Redis URL: %s", redactURLError(err))
		}
		fo, ok := connOpt.(asynq.RedisFailoverClientOpt)
		if !ok || fo.MasterName == "" {
			return nil, errors.New("invalid Redis URL: redis-sentinel:// needs ?master=<name>")
		}
		where := "sentinels " + strings.Join(fo.SentinelAddrs, ",") + " (master " + fo.MasterName + ")"
		return &Target{Where: where, open: func() redis.UniversalClient {
			return fo.MakeRedisClient().(redis.UniversalClient)
		}}, nil
	default:
		return nil, fmt.Errorf("unsupported Redis URL scheme %q (want redis, rediss, unix or redis-sentinel)", scheme)
	}
}

// isNodeList reports whether raw is a comma-separated list of redis:// or
// rediss:// URLs (a comma alone may be part of a password).
func isNodeList(raw string) bool {
	parts := strings.Split(raw, ",")
	if len(parts) < 2 {
		return false
	}
	for _, p := range parts {
		p = strings.TrimSpace(p)
		if !strings.HasPrefix(p, "redis://") && !strings.HasPrefix(p, "rediss://") {
			return false
		}
	}
	return true
}

// ClusterStateReloadInterval is how stale a cluster client's slot map may
// get. go-redis reloads the map at once on MOVED/ASK, but a primary that
// died answers nothing: without a reload the client keeps dialling it until
// the map is this old (go-redis's default is 60 s, measured as a 60 s stall
// of every task of the dead primary's slots after its replica took over).
// A reload is one CLUSTER SLOTS per client, done only when the client is
// in use.
const ClusterStateReloadInterval = time.Second

// parseClusterList reads a comma-separated list of redis:// or rediss://
// node URLs as one Redis Cluster; credentials and TLS come from the first.
func parseClusterList(raw string) (*Target, error) {
	opt := redis.ClusterOptions{ClusterStateReloadInterval: ClusterStateReloadInterval}
	for i, part := range strings.Split(raw, ",") {
		o, err := redis.ParseURL(strings.TrimSpace(part))
		if err != nil {
			return nil, fmt.Errorf("invalid Redis URL (cluster node %d): %s", i+1, redactURLError(err))
		}
		if o.Network != "tcp" {
			return nil, fmt.Errorf("invalid Redis URL (cluster node %d): cluster nodes must be redis:// or rediss://", i+1)
		}
		if i == 0 {
			opt.Username, opt.Password, opt.TLSConfig = o.Username, o.Password, o.TLSConfig
		}
		opt.Addrs = append(opt.Addrs, o.Addr)
	}
	return &Target{
		Where: "cluster " + strings.Join(opt.Addrs, ","),
		open:  func() redis.UniversalClient { return redis.NewClusterClient(&opt) },
	}, nil
}

// redactURLError drops the URL that net/url puts into its errors.
func redactURLError(err error) string {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		return ue.Err.Error()
	}
	return err.Error()
}
