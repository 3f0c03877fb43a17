package worker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/sandboxq/sandboxq/internal/redistest"
	"github.com/sandboxq/sandboxq/internal/testutil"
	"github.com/sandboxq/sandboxq/schema"
	"github.com/sandboxq/sandboxq/tasks"
	"github.com/sandboxq/sandboxq/worker"
)

// probe is a task type only these tests register.
type probe struct {
	N int `json:"n"`
}

func (probe) TypeName() string { return "test:probe" }
func (probe) Validate() error  { return nil }

// startProbeWorker runs a worker whose idle wait is interval and whose
// test:probe handler reports each task it runs on the returned channel.
func startProbeWorker(t *testing.T, b *testBundle, interval time.Duration) <-chan int {
	t.Helper()
	return startProbeWorkerOn(t, b, b.rdb, b.rdb, interval)
}

// startProbeWorkerOn is startProbeWorker on rdb, whose wake lists live on
// the node node talks to.
func startProbeWorkerOn(t *testing.T, b *testBundle, rdb, node redis.UniversalClient, interval time.Duration) <-chan int {
	t.Helper()
	ran := make(chan int, 16)
	runIdleWorker(t, b, rdb, node, interval, func(_ context.Context, task *asynq.Task) error {
		p, err := tasks.Decode[probe](task)
		if err == nil {
			ran <- p.N
		}
		return err
	})
	return ran
}

// runIdleWorker runs a worker on rdb (no watchers, no schedule) whose idle
// wait is interval and which handles test:probe with handle, until the test
// ends; it returns once the worker waits on its wake lists (on node).
func runIdleWorker(t *testing.T, b *testBundle, rdb, node redis.UniversalClient, interval time.Duration, handle asynq.HandlerFunc) {
	t.Helper()
	w, err := worker.New(worker.Config{
		Redis: rdb, Gateway: b.gw, Logger: b.logger, TaskCheckInterval: interval,
		Watchers: worker.WatcherConfig{Disabled: true}, Maintenance: worker.MaintenanceConfig{Disabled: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	w.Mux().HandleFunc("test:probe", handle)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker Run: %v", err)
		}
	})
	waitForIdleWait(t, node)
}

// waitForIdleWait returns once a connection of the worker blocks in BLPOP
// on the wake lists, i.e. the worker found every queue empty and waits.
func waitForIdleWait(t *testing.T, rdb redis.UniversalClient) {
	t.Helper()
	testutil.Eventually(t, "a worker connection waiting in BLPOP", 20*time.Second, func() bool {
		list, err := rdb.ClientList(context.Background()).Result()
		if err != nil {
			t.Fatal(err)
		}
		return strings.Contains(list, "cmd=blpop")
	})
}

func expectRun(t *testing.T, ran <-chan int, n int, within time.Duration, why string) {
	t.Helper()
	select {
	case got := <-ran:
		if got != n {
			t.Fatalf("ran probe %d, want %d", got, n)
		}
	case <-time.After(within):
		t.Fatalf("probe %d did not run within %v: %s", n, within, why)
	}
}

// TestIdleWorkerWokenByEnqueue: with an idle wait of an hour, a task
// enqueued through tasks.Client still runs, because the producer's token
// wakes the waiting worker. Without the wake-up it would wait the hour.
func TestIdleWorkerWokenByEnqueue(t *testing.T) {
	b := setup(t)
	ran := startProbeWorker(t, b, time.Hour)
	for n := range 3 {
		if _, err := b.client.Enqueue(context.Background(), probe{N: n}, asynq.Queue(tasks.QueueDefault)); err != nil {
			t.Fatal(err)
		}
		expectRun(t, ran, n, 20*time.Second, "the enqueue did not wake the idle worker")
		waitForIdleWait(t, b.rdb)
	}
}

// TestIdleWorkerWokenOnCluster: the wake lists share one hash tag, so the
// BLPOP over all of them works in Redis Cluster.
func TestIdleWorkerWokenOnCluster(t *testing.T) {
	b := setup(t)
	cl := redistest.NewCluster(t)
	rdb := cl.Client(t)
	primary, err := cl.PrimaryFor(t.Context(), schema.WakeKey(tasks.QueueDefault))
	if err != nil {
		t.Fatal(err)
	}
	node := primary.Client(t)
	ran := startProbeWorkerOn(t, b, rdb, node, time.Hour)
	if _, err := tasks.NewClient(rdb).Enqueue(context.Background(), probe{N: 1}, asynq.Queue(tasks.QueueDefault)); err != nil {
		t.Fatal(err)
	}
	expectRun(t, ran, 1, 20*time.Second, "the enqueue did not wake the idle worker on the cluster")
}

// TestIdleWorkerFindsUnannouncedTasks: a task enqueued without a token
// (another producer, a retry falling due) is found after the idle wait.
func TestIdleWorkerFindsUnannouncedTasks(t *testing.T) {
	b := setup(t)
	ran := startProbeWorker(t, b, 100*time.Millisecond)
	task, err := tasks.New(probe{N: 7})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := asynq.NewClientFromRedisClient(b.rdb).Enqueue(task, asynq.Queue(tasks.QueueDefault)); err != nil {
		t.Fatal(err)
	}
	expectRun(t, ran, 7, 20*time.Second, "an unannounced task was never found")
}

// TestIdleWorkerWokenByForwardedTask: a scheduled task (and so a retry)
// is announced by nobody; when asynq's forwarder moves it to its queue,
// the worker wakes one for it, so it does not wait for the idle wait.
func TestIdleWorkerWokenByForwardedTask(t *testing.T) {
	b := setup(t)
	ran := startProbeWorker(t, b, time.Hour)
	if _, err := b.client.Enqueue(context.Background(), probe{N: 5}, asynq.Queue(tasks.QueueDefault), asynq.ProcessIn(time.Second)); err != nil {
		t.Fatal(err)
	}
	expectRun(t, ran, 5, 20*time.Second, "the forwarded task did not wake the idle worker")
}

// TestTaskAfterALongIdleWaitHasAFullLease: asynq sets a task's lease
// expiry just before its dequeue script, so the wait must not sit between
// the two: a task picked up after the worker idled for a while still gets
// asynq's full 30 s lease from its pickup, not from when the wait began.
func TestTaskAfterALongIdleWaitHasAFullLease(t *testing.T) {
	b := setup(t)
	leases := make(chan time.Time, 1)
	runIdleWorker(t, b, b.rdb, b.rdb, time.Hour, func(ctx context.Context, task *asynq.Task) error {
		id, _ := asynq.GetTaskID(ctx)
		score, err := b.rdb.ZScore(ctx, schema.AsynqQueueKey(tasks.QueueDefault, "lease"), id).Result()
		if err != nil {
			return err
		}
		leases <- time.Unix(int64(score), 0)
		return nil
	})
	// Idle for a while: the gap the lease must not lose.
	time.Sleep(4 * time.Second)
	enqueued := time.Now()
	if _, err := b.client.Enqueue(context.Background(), probe{N: 1}, asynq.Queue(tasks.QueueDefault)); err != nil {
		t.Fatal(err)
	}
	select {
	case exp := <-leases:
		if left := exp.Sub(enqueued); left < 28*time.Second {
			t.Fatalf("the task's lease ends %v after its enqueue, want about 30s: the idle wait was charged to it", left)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the probe did not run")
	}
}
