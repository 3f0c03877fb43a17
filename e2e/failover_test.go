package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/sandboxq/sandboxq/gateway/local"
	"github.com/sandboxq/sandboxq/internal/redistest"
	"github.com/sandboxq/sandboxq/internal/testutil"
	"github.com/sandboxq/sandboxq/schema"
	"github.com/sandboxq/sandboxq/tasks"
)

const (
	failoverProjects = 30
	failoverTasks    = 300
	// failoverKillAt is how many tasks are acknowledged when the primary
	// is killed.
	failoverKillAt = 150
	// failoverFrozenTail is how many of the tasks before the kill are
	// enqueued (due in 3 s) while the primary's replicas are frozen
	// (SIGSTOP) and cut off (CLIENT KILL TYPE replica): the primary
	// acknowledges them, WAIT 1 says they are not replicated, and the kill
	// shows what async replication loses.
	failoverFrozenTail = 5
)

// TestFailover: three cmd/worker processes, a producer enqueueing 300 tasks
// over 30 projects (an ensure per project, then commands that append their
// number to the project's log), and the Redis primary SIGKILLed after 150
// acknowledged enqueues: under Sentinel the primary, on the cluster the
// primary of the default queue's slot. Workers, the producer, the API and
// the watchers carry on without a restart once a replica is promoted.
//
// The producer runs WAIT 1 after each enqueue on the connection that made
// it, so the test knows which acknowledged tasks had reached a replica.
// The last failoverFrozenTail enqueues before the kill are made while the
// primary's replicas are cut off, so they reach no replica. Asserted: no
// replicated task is lost, exactly the cut-off ones are, and no project
// gets a second sandbox. Printed: everything else.
func TestFailover(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"sentinel", "cluster"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			tp := startTopology(t, name)
			f := runFailover(t, tp)
			t.Logf("failover under load, %s:\n%s", name, f.table())
			if f.lostReplicated != 0 {
				t.Errorf("%d tasks acknowledged and replicated before the kill were lost", f.lostReplicated)
			}
			if f.dupCreates != 0 {
				t.Errorf("%d duplicate sandbox creates at the provider", f.dupCreates)
			}
			// The tasks enqueued with the replicas cut off must show up as
			// lost: this is what async replication loses, and it proves the
			// test can see a loss.
			if f.lostUnreplicated != failoverFrozenTail {
				t.Errorf("%d unreplicated tasks lost, want the %d enqueued with the replicas cut off", f.lostUnreplicated, failoverFrozenTail)
			}
		})
	}
}

// failoverRun is what one failover run measured.
type failoverRun struct {
	topology                               string
	enqueued, replicated, enqueueErrors    int
	completed, archived                    int
	lostReplicated, lostUnreplicated       int
	dupExecutions, dupCreates, overlapping int
	failoverSecs, firstCompletionSecs      float64
	lastCompletionSecs                     float64
	// primaries lists, in order, the primaries of the killed primary's
	// data seen from the kill to the end of the run.
	primaries []string
}

func (f *failoverRun) table() string {
	var b strings.Builder
	row := func(k string, v any) { fmt.Fprintf(&b, "  %-60s %v\n", k, v) }
	row("tasks enqueued (acknowledged)", f.enqueued)
	row(fmt.Sprintf("  of which the last %d before the kill with replicas cut off", failoverFrozenTail), failoverFrozenTail)
	row("  of which replicated before the ack (WAIT 1)", f.replicated)
	row("enqueue errors retried by the producer", f.enqueueErrors)
	row("tasks completed", f.completed)
	row("tasks archived", f.archived)
	row("tasks lost, replicated", f.lostReplicated)
	row("tasks lost, not replicated", f.lostUnreplicated)
	row("duplicate executions", f.dupExecutions)
	row("duplicate sandbox creates at the provider", f.dupCreates)
	row("overlapping mutations of one sandbox", f.overlapping)
	row("primaries after the kill (more than one: another failover)", strings.Join(f.primaries, " → "))
	row("seconds from kill to failover done", fmt.Sprintf("%.1f", f.failoverSecs))
	row("seconds from kill to first task completed after it", fmt.Sprintf("%.1f", f.firstCompletionSecs))
	row("seconds from kill to last task completed", fmt.Sprintf("%.1f", f.lastCompletionSecs))
	return b.String()
}

// ackedTask is one task the producer got an acknowledgement for.
type ackedTask struct {
	n          int
	queue, id  string
	replicated bool
}

func runFailover(t *testing.T, tp *topology) *failoverRun {
	lp, _, rec := localProvider(t)
	env := workerEnv(tp, lp)
	env["SANDBOXQ_CONCURRENCY"] = "10"
	var workers []*workerProc
	for range 3 {
		workers = append(workers, startWorker(t, env))
	}
	prod := newProducer(t, tp)
	var killed time.Time
	failover := make(chan float64, 1)
	var watch func() []string
	var victim *redistest.Node
	var frozen []*redistest.Node
	freeze := func() {
		victim = currentPrimary(t, tp)
		frozen = replicasOf(t, tp, victim)
		for _, r := range frozen {
			must(t, r.Freeze())
			t.Cleanup(func() { _ = r.Thaw() })
		}
		// Cut the links too: a frozen replica's kernel would still buffer
		// what the primary sends, and deliver it when thawed.
		must(t, victim.Client(t).ClientKillByFilter(t.Context(), "TYPE", "replica").Err())
		prod.waitMS, prod.delayed = 100, true
	}
	kill := func() {
		victim.Kill()
		killed = time.Now()
		for _, r := range frozen {
			must(t, r.Thaw())
		}
		prod.waitMS, prod.delayed = 500, false
		t.Logf("%s: SIGKILL primary %s (pid %d) after %d acknowledged enqueues, the last %d with its replicas frozen",
			tp.name, victim.Addr, victim.Pid, failoverKillAt, failoverFrozenTail)
		watch = watchPrimary(tp)
		// The producer carries on while Redis fails over.
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			if err := waitHealthy(ctx, tp); err != nil {
				t.Errorf("failover: %v", err)
			}
			failover <- time.Since(killed).Seconds()
		}()
	}
	acked := prod.run(t, freeze, kill)
	failoverSecs := <-failover
	afterFailover(t, tp, workers[0])
	f := settle(t, tp, lp, acked)
	f.primaries = watch()
	f.topology, f.failoverSecs, f.enqueueErrors = tp.name, failoverSecs, prod.errors
	f.firstCompletionSecs, f.lastCompletionSecs = completionsAfter(t, tp, acked, killed)
	f.dupCreates = duplicateSandboxes(rec.Snapshot())
	f.overlapping = countOverlaps(rec.Snapshot())
	return f
}

// currentPrimary returns the primary of the default queue's data.
func currentPrimary(t *testing.T, tp *topology) *redistest.Node {
	var n *redistest.Node
	var err error
	if tp.cluster != nil {
		n, err = tp.cluster.PrimaryFor(t.Context(), "asynq:{"+tasks.QueueDefault+"}:pending")
	} else {
		n, err = tp.sentinel.Primary(t.Context())
	}
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// replicasOf returns the replicas connected to primary (INFO replication).
func replicasOf(t *testing.T, tp *topology, primary *redistest.Node) []*redistest.Node {
	text, err := primary.Client(t).Info(t.Context(), "replication").Result()
	if err != nil {
		t.Fatal(err)
	}
	var out []*redistest.Node
	for _, m := range regexp.MustCompile(`(?m)^slave\d+:ip=([^,]+),port=(\d+),`).FindAllStringSubmatch(text, -1) {
		addr := m[1] + ":" + m[2]
		var n *redistest.Node
		if tp.cluster != nil {
			n = tp.cluster.Node(addr)
		} else {
			n = tp.sentinel.Node(addr)
		}
		if n == nil {
			t.Fatalf("primary %s reports unknown replica %s", primary.Addr, addr)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		t.Fatalf("primary %s has no replica:\n%s", primary.Addr, text)
	}
	return out
}

// watchPrimary polls, every 200 ms until the returned stop is called, which
// node is the primary of the default queue's data, and stop returns the
// distinct primaries seen, in order.
func watchPrimary(tp *topology) (stop func() []string) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan []string)
	go func() {
		var seen []string
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			var n *redistest.Node
			var err error
			if tp.cluster != nil {
				n, err = tp.cluster.PrimaryFor(ctx, "asynq:{"+tasks.QueueDefault+"}:pending")
			} else {
				n, err = tp.sentinel.Primary(ctx)
			}
			if err == nil && n.Alive() && (len(seen) == 0 || seen[len(seen)-1] != n.Addr) {
				seen = append(seen, n.Addr)
			}
			select {
			case <-ctx.Done():
				done <- seen
				return
			case <-tick.C:
			}
		}
	}()
	return func() []string {
		cancel()
		return <-done
	}
}

func waitHealthy(ctx context.Context, tp *topology) error {
	if tp.cluster != nil {
		return tp.cluster.WaitHealthy(ctx)
	}
	return tp.sentinel.WaitHealthy(ctx)
}

// producer enqueues through a client with one connection per node, so
// that WAIT on that connection covers the enqueue's writes.
type producer struct {
	tp     *topology
	rdb    redis.UniversalClient
	client *tasks.Client
	errors int
	// waitMS is the timeout of WAIT 1 after each enqueue.
	waitMS int
	// delayed makes commands due in 3 s, so that no worker runs them
	// before the kill.
	delayed bool
}

func newProducer(t *testing.T, tp *topology) *producer {
	var rdb redis.UniversalClient
	if tp.cluster != nil {
		o := tp.cluster.Options()
		o.PoolSize = 1
		rdb = redis.NewClusterClient(o)
	} else {
		o := tp.sentinel.Options()
		o.PoolSize = 1
		rdb = redis.NewFailoverClient(o)
	}
	t.Cleanup(func() { _ = rdb.Close() })
	return &producer{tp: tp, rdb: rdb, client: tasks.NewClient(rdb), waitMS: 500}
}

// run enqueues the batch; freeze is called failoverFrozenTail tasks before
// the kill, and kill once failoverKillAt tasks are acknowledged, and the producer goes on afterwards, retrying each failed
// enqueue (same task id, so a retry of an enqueue that did happen is not a
// second task).
func (p *producer) run(t *testing.T, freeze, kill func()) []ackedTask {
	var acked []ackedTask
	for n := range failoverTasks {
		switch n {
		case failoverKillAt - failoverFrozenTail:
			freeze()
		case failoverKillAt:
			kill()
		}
		deadline := time.Now().Add(60 * time.Second)
		for {
			a, err := p.enqueue(t.Context(), n)
			if err == nil {
				acked = append(acked, a)
				break
			}
			p.errors++
			if time.Now().After(deadline) {
				t.Fatalf("enqueue %d: still failing after 60 s: %v", n, err)
			}
			time.Sleep(50 * time.Millisecond) // a retry pause, not synchronization
		}
	}
	return acked
}

// isEnsure reports whether task n of the batch is a sandbox:ensure: one
// per project before the kill and again right after it.
func isEnsure(n int) bool {
	return n < failoverProjects || (n >= failoverKillAt && n < failoverKillAt+failoverProjects)
}

func failoverProject(n int) tasks.Project {
	return tasks.Project{Namespace: "fo", Name: fmt.Sprintf("p%02d", n%failoverProjects)}
}

func (p *producer) enqueue(ctx context.Context, n int) (ackedTask, error) {
	proj := failoverProject(n)
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var e *tasks.Enqueued
	var err error
	keys := []string{"asynq:{" + tasks.QueueDefault + "}:pending"}
	if isEnsure(n) {
		// An ensure per project before the kill and again right after it.
		e, err = p.client.EnsureSandbox(ctx, tasks.SandboxEnsure{Project: proj})
		keys = []string{"asynq:{" + tasks.QueueCritical + "}:pending", schema.DedupKey(tasks.TypeSandboxEnsure, proj)}
	} else {
		id := fmt.Sprintf("fo-%d", n)
		opts := []asynq.Option{asynq.TaskID(id)}
		if p.delayed {
			opts = append(opts, asynq.ProcessIn(3*time.Second))
		}
		e, err = p.client.RunCommand(ctx, tasks.CommandRun{Project: proj,
			Command: fmt.Sprintf("sleep 0.1; echo %d >> log.txt", n)}, opts...)
		if errors.Is(err, asynq.ErrTaskIDConflict) {
			e, err = &tasks.Enqueued{ID: id, Queue: tasks.QueueDefault, Type: tasks.TypeCommandRun}, nil
		}
	}
	if err != nil {
		return ackedTask{}, err
	}
	a := ackedTask{n: n, queue: e.Queue, id: e.ID, replicated: true}
	for _, k := range keys {
		a.replicated = a.replicated && p.replicated(ctx, k)
	}
	return a, nil
}

// replicated runs WAIT 1 on the connection that wrote key.
func (p *producer) replicated(ctx context.Context, key string) bool {
	var c interface {
		Do(context.Context, ...any) *redis.Cmd
	} = p.rdb
	if cc, ok := p.rdb.(*redis.ClusterClient); ok {
		m, err := cc.MasterForKey(ctx, key)
		if err != nil {
			return false
		}
		c = m
	}
	n, err := c.Do(ctx, "WAIT", 1, p.waitMS).Int()
	return err == nil && n >= 1
}

// afterFailover: the API of a worker process enqueues and long-polls a
// task, and a server:start that waits on watcher events completes.
func afterFailover(t *testing.T, tp *topology, w *workerProc) {
	m := regexp.MustCompile(`"dashboard":"(http://127\.0\.0\.1:\d+)/`).FindStringSubmatch(w.Logs())
	if m == nil {
		t.Fatalf("no HTTP address in the worker's start-up line:\n%s", w.Logs())
	}
	req, _ := http.NewRequest(http.MethodPost, m[1]+"/api/v1/tasks/command:run", strings.NewReader(`{"namespace":"fo","name":"p00","command":"true"}`))
	req.Header.Set("Content-Type", "application/json")
	code, body, _ := doJSON(t, req)
	if code != http.StatusAccepted {
		t.Fatalf("API enqueue after failover: %d %v", code, body)
	}
	req, _ = http.NewRequest(http.MethodGet, fmt.Sprintf("%s/api/v1/tasks/%s/%s?wait=60s", m[1], body["queue"], body["id"]), nil)
	if code, st, _ := doJSON(t, req); code != http.StatusOK || st["state"] != tasks.StateCompleted {
		t.Fatalf("API long-poll after failover: %d %v", code, st)
	}
	client := tasks.NewClient(tp.rdb)
	e, err := client.StartServer(t.Context(), tasks.ServerStart{Project: failoverProject(1), Slug: "web",
		Command: "exec python3 -m http.server $PORT --bind 127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	var started struct{ Status string }
	if waitDone(t, client, e, &started); started.Status != "ready" {
		t.Fatalf("server:start after failover: %+v", started)
	}
}

// settle waits until every acknowledged task is finished or gone, then
// counts outcomes against the commands' logs.
func settle(t *testing.T, tp *topology, lp *local.Provider, acked []ackedTask) *failoverRun {
	client := tasks.NewClient(tp.rdb)
	f := &failoverRun{enqueued: len(acked)}
	states := map[int]string{}
	testutil.Eventually(t, "every acknowledged task finished or gone", 3*time.Minute, func() bool {
		for _, a := range acked {
			if s := states[a.n]; s == tasks.StateCompleted || s == tasks.StateArchived || s == "gone" {
				continue
			}
			res, err := client.Status(t.Context(), a.queue, a.id)
			switch {
			case errors.Is(err, tasks.ErrTaskNotFound):
				states[a.n] = "gone"
			case err != nil:
				return false
			default:
				states[a.n] = res.State
				if res.State != tasks.StateCompleted && res.State != tasks.StateArchived {
					return false
				}
			}
		}
		return true
	})
	runs := commandRuns(t, lp)
	hasSandbox := map[string]bool{}
	for _, sb := range lp.Sandboxes() {
		hasSandbox[sb.Namespace+"/"+sb.Name] = true
	}
	var dups []int
	defer func() {
		if len(dups) > 0 {
			t.Logf("tasks that ran more than once: %v", dups)
		}
	}()
	for _, a := range acked {
		if a.replicated {
			f.replicated++
		}
		// A command ran if it wrote its line; an ensure if its project
		// has a sandbox.
		p := failoverProject(a.n)
		ran := runs[a.n] > 0 || (isEnsure(a.n) && hasSandbox[p.Namespace+"/"+p.Name])
		switch {
		case states[a.n] == tasks.StateCompleted:
			f.completed++
		case states[a.n] == tasks.StateArchived:
			f.archived++
		}
		if states[a.n] == "gone" && !ran {
			if a.replicated {
				f.lostReplicated++
				t.Logf("lost: task %d (%s), acknowledged and replicated", a.n, a.id)
			} else {
				f.lostUnreplicated++
				t.Logf("lost: task %d (%s), acknowledged, not replicated", a.n, a.id)
			}
		}
		if runs[a.n] > 1 {
			f.dupExecutions += runs[a.n] - 1
			dups = append(dups, a.n)
		}
	}
	return f
}

// commandRuns counts, per task number, the lines the commands appended to
// their project's log.txt.
func commandRuns(t *testing.T, lp *local.Provider) map[int]int {
	runs := map[int]int{}
	for _, sb := range lp.Sandboxes() {
		fh, err := os.Open(filepath.Join(sb.Dir, "log.txt"))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			if n, err := strconv.Atoi(strings.TrimSpace(sc.Text())); err == nil {
				runs[n]++
			}
		}
		fh.Close()
	}
	return runs
}

// completionsAfter returns the seconds from the kill to the earliest and
// the latest completion of an acknowledged task after it.
func completionsAfter(t *testing.T, tp *topology, acked []ackedTask, killed time.Time) (first, last float64) {
	insp := asynq.NewInspectorFromRedisClient(tp.rdb)
	first = -1
	for _, a := range acked {
		info, err := insp.GetTaskInfo(a.queue, a.id)
		if err != nil || info.CompletedAt.IsZero() || !info.CompletedAt.After(killed) {
			continue
		}
		d := info.CompletedAt.Sub(killed).Seconds()
		if first < 0 || d < first {
			first = d
		}
		last = max(last, d)
	}
	if first < 0 {
		t.Fatal("no task completed after the kill")
	}
	return first, last
}

// duplicateSandboxes counts, over all projects, the sandbox ids beyond the
// first that the provider served for one project.
func duplicateSandboxes(obs []local.Observation) int {
	ids := map[string]map[string]bool{}
	for _, o := range obs {
		if o.SandboxID == "" || o.Name == "" {
			continue
		}
		k := o.Namespace + "/" + o.Name
		if ids[k] == nil {
			ids[k] = map[string]bool{}
		}
		ids[k][o.SandboxID] = true
	}
	n := 0
	for _, set := range ids {
		n += len(set) - 1
	}
	return n
}

// countOverlaps counts pairs of project mutations of one sandbox that
// overlapped in time (testutil.NoOverlappingMutations fails at the first;
// a failover run reports them instead).
func countOverlaps(obs []local.Observation) int {
	by := map[string][]local.Observation{}
	for _, o := range obs {
		if testutil.ProjectMutation(o) {
			by[o.SandboxID] = append(by[o.SandboxID], o)
		}
	}
	n := 0
	for _, list := range by {
		sort.Slice(list, func(i, j int) bool { return list[i].Start.Before(list[j].Start) })
		end := time.Time{}
		for _, o := range list {
			if o.Start.Before(end) {
				n++
			}
			if o.End.After(end) {
				end = o.End
			}
		}
	}
	return n
}
