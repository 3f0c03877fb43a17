package redisurl

import (
	"testing"

	"github.com/redis/go-redis/v9"
)

func TestParseRedisURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		raw, where string
		check      func(t *testing.T, c redis.UniversalClient)
	}{
		{"redis://127.0.0.1:6380/3", "127.0.0.1:6380", func(t *testing.T, c redis.UniversalClient) {
			o := c.(*redis.Client).Options()
			if o.DB != 3 {
				t.Errorf("db %d, want 3", o.DB)
			}
		}},
		{"rediss://user:p,w@cache.example:6380", "cache.example:6380", func(t *testing.T, c redis.UniversalClient) {
			o := c.(*redis.Client).Options()
			if o.TLSConfig == nil || o.Username != "user" || o.Password != "p,w" {
				t.Errorf("options %+v: want TLS, user and the password with a comma", o)
			}
		}},
		{"unix:///run/redis.sock?db=2", "/run/redis.sock", nil},
		{"redis-sentinel://s1:26379,s2:26379?master=main", "sentinels s1:26379,s2:26379 (master main)", nil},
		{"redis://:pw@n1:7000, redis://n2:7001", "cluster n1:7000,n2:7001", func(t *testing.T, c redis.UniversalClient) {
			if _, ok := c.(*redis.ClusterClient); !ok {
				t.Errorf("client %T, want a cluster client", c)
			}
		}},
	}
	for _, tt := range tests {
		target, err := Parse(tt.raw)
		if err != nil {
			t.Errorf("%s: %v", tt.raw, err)
			continue
		}
		if target.Where != tt.where {
			t.Errorf("%s: where %q, want %q", tt.raw, target.Where, tt.where)
		}
		c := target.Open()
		if tt.check != nil {
			tt.check(t, c)
		}
		c.Close()
	}
	for _, bad := range []string{"", "localhost:6379", "http://x", "redis-sentinel://s1:26379", "redis://a:1,unix:///s"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
