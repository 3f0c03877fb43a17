package redisurl

import (
	"testing"

	"github.com/redis/go-redis/v9"
)

// TestClusterReloadsSlotMapOften: a cluster client from a node list reloads
// its slot map every ClusterStateReloadInterval, so a promoted replica is
// found within about that time (go-redis's default would be 60 s).
func TestClusterReloadsSlotMapOften(t *testing.T) {
	target, err := Parse("redis://127.0.0.1:7001,redis://127.0.0.1:7002")
	if err != nil {
		t.Fatal(err)
	}
	rdb, ok := target.Open().(*redis.ClusterClient)
	if !ok {
		t.Fatalf("Open() is %T, want *redis.ClusterClient", target.Open())
	}
	defer rdb.Close()
	if got := rdb.Options().ClusterStateReloadInterval; got != ClusterStateReloadInterval {
		t.Fatalf("ClusterStateReloadInterval = %v, want %v", got, ClusterStateReloadInterval)
	}
}
