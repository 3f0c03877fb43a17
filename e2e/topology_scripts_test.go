package e2e

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sandboxq/sandboxq/api"
	"github.com/sandboxq/sandboxq/events"
	"github.com/sandboxq/sandboxq/gateway"
	"github.com/sandboxq/sandboxq/gateway/ratelimit"
	"github.com/sandboxq/sandboxq/internal/testutil"
	"github.com/sandboxq/sandboxq/maintenance"
	"github.com/sandboxq/sandboxq/schema"
	"github.com/sandboxq/sandboxq/tasks"
)

// luaScript is one redis.NewScript found in the module's source.
type luaScript struct {
	where string // file:line
	sha   string
}

// walkGoFiles parses the module's non-test Go files into byDir.
func walkGoFiles(byDir map[string][]*ast.File, fset *token.FileSet) error {
	return filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if path != ".." && errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") || d.Name() == "node_modules") && path != ".." {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		byDir[filepath.Dir(path)] = append(byDir[filepath.Dir(path)], f)
		return nil
	})
}

// moduleScripts finds every redis.NewScript(...) call in the module's
// non-test Go files and computes the SHA1 of its source, evaluating string
// literals, + and package-level string constants or variables. A script
// whose source it cannot evaluate fails the test: it must not escape the
// check.
func moduleScripts(t *testing.T) []luaScript {
	t.Helper()
	// Other packages' tests create and remove files in the tree while this
	// walks it (builds, temporary sandboxes): an entry that vanishes is
	// skipped, and a listing that fails because one did is read again.
	var (
		byDir map[string][]*ast.File
		fset  *token.FileSet
		err   error
	)
	for range 3 {
		byDir, fset = map[string][]*ast.File{}, token.NewFileSet()
		if err = walkGoFiles(byDir, fset); !errors.Is(err, fs.ErrNotExist) {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []luaScript
	for _, files := range byDir {
		values := packageStrings(files)
		for _, f := range files {
			ast.Inspect(f, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok || len(call.Args) != 1 {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok || sel.Sel.Name != "NewScript" {
					return true
				}
				where := fset.Position(call.Pos()).String()
				src, ok := evalString(call.Args[0], values)
				if !ok {
					t.Errorf("%s: cannot evaluate the script's source; keep it a string constant expression", where)
					return true
				}
				sum := sha1.Sum([]byte(src))
				out = append(out, luaScript{where: where, sha: hex.EncodeToString(sum[:])})
				return true
			})
		}
	}
	return out
}

// packageStrings maps the package-level identifiers of files to their
// initializer expressions.
func packageStrings(files []*ast.File) map[string]ast.Expr {
	m := map[string]ast.Expr{}
	for _, f := range files {
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || (gd.Tok != token.CONST && gd.Tok != token.VAR) {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, name := range vs.Names {
					if i < len(vs.Values) {
						m[name.Name] = vs.Values[i]
					}
				}
			}
		}
	}
	return m
}

func evalString(e ast.Expr, values map[string]ast.Expr) (string, bool) {
	switch e := e.(type) {
	case *ast.BasicLit:
		if e.Kind != token.STRING {
			return "", false
		}
		s, err := strconv.Unquote(e.Value)
		return s, err == nil
	case *ast.ParenExpr:
		return evalString(e.X, values)
	case *ast.BinaryExpr:
		if e.Op != token.ADD {
			return "", false
		}
		a, ok1 := evalString(e.X, values)
		b, ok2 := evalString(e.Y, values)
		return a + b, ok1 && ok2
	case *ast.Ident:
		if v, ok := values[e.Name]; ok {
			return evalString(v, values)
		}
	}
	return "", false
}

// scriptLog is a go-redis hook that records, per script SHA1, how often
// EVAL/EVALSHA succeeded, and every other failure of a script call
// (CROSSSLOT, a key of another slot or node, a Lua error). NOSCRIPT is
// not a failure: redis.Script.Run falls back to EVAL.
type scriptLog struct {
	mu       sync.Mutex
	ok       map[string]int
	failures []string
}

func (l *scriptLog) DialHook(next redis.DialHook) redis.DialHook { return next }

func (l *scriptLog) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		l.record(cmd, err)
		return err
	}
}

func (l *scriptLog) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		for _, c := range cmds {
			l.record(c, c.Err())
		}
		return err
	}
}

func (l *scriptLog) record(cmd redis.Cmder, err error) {
	args := cmd.Args()
	if len(args) < 2 {
		return
	}
	var sha string
	switch strings.ToLower(cmd.Name()) {
	case "evalsha", "evalsha_ro":
		sha = fmt.Sprint(args[1])
	case "eval", "eval_ro":
		sum := sha1.Sum([]byte(fmt.Sprint(args[1])))
		sha = hex.EncodeToString(sum[:])
	default:
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ok == nil {
		l.ok = map[string]int{}
	}
	switch {
	case err == nil || errors.Is(err, redis.Nil):
		l.ok[sha]++
	case strings.HasPrefix(err.Error(), "NOSCRIPT"):
	case errors.Is(err, context.Canceled):
	default:
		l.failures = append(l.failures, fmt.Sprintf("%s %s: %v", cmd.Name(), sha, err))
	}
}

// luaScripts: every Lua script of the module runs on the topology without
// an error: on the cluster this proves it touches one slot (Redis 7 refuses
// CROSSSLOT and, unless a script declares allow-cross-slot-keys, any key of
// another slot). Each is run through its package's public API on a client
// with a hook that records every EVAL/EVALSHA.
func luaScripts(t *testing.T, tp *topology) {
	scripts := moduleScripts(t)
	if want := len(schema.AllScripts()); len(scripts) < want {
		t.Fatalf("found %d scripts in the module's source, want at least the %d of schema.AllScripts", len(scripts), want)
	}
	log := &scriptLog{}
	rdb := openURL(t, tp.url)
	rdb.AddHook(log)
	exerciseScripts(t, tp, rdb)
	log.mu.Lock()
	defer log.mu.Unlock()
	for _, f := range log.failures {
		t.Errorf("%s: script failed: %s", tp.name, f)
	}
	for _, s := range scripts {
		if log.ok[s.sha] == 0 {
			t.Errorf("%s: script at %s (sha %s) never ran successfully; exercise it here", tp.name, s.where, s.sha[:12])
		}
	}
	t.Logf("%s: %d scripts, each ran without error", tp.name, len(scripts))
}

// exerciseScripts calls, through public APIs on rdb, everything that runs
// a script: ensure dedup, API idempotency, the registry and event store,
// watcher leases, the scheduler's slot markers and the project lease. On
// the cluster it does so for one project on each primary: Redis 7 lets a
// script without a shebang flag touch an undeclared key of another slot of
// the same node, but never a key of another node, so a script touching a
// fixed key (a global index, a counter) fails for at least two of them.
func exerciseScripts(t *testing.T, tp *topology, rdb redis.UniversalClient) {
	ctx := t.Context()
	_, gw, _ := localProvider(t)
	client := tasks.NewClient(rdb)
	a, err := api.New(api.Config{Client: client, Redis: rdb})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	store := events.NewStore(rdb, events.StoreConfig{})
	gate, err := ratelimit.New(rdb, ratelimit.Config{})
	if err != nil {
		t.Fatal(err)
	}
	gate.Pause(ctx, 50*time.Millisecond) // the shared 429 pause
	for i, p := range projectsOnEveryPrimary(t, tp) {
		for range 2 {
			if _, err := client.EnsureSandbox(ctx, tasks.SandboxEnsure{Project: p}); err != nil {
				t.Fatal(err)
			}
		}
		body := fmt.Sprintf(`{"namespace":%q,"name":%q,"command":"true"}`, p.Namespace, p.Name)
		req, _ := http.NewRequest(http.MethodPost, srv.URL+api.Prefix+"/tasks/command:run", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", fmt.Sprintf("lua-%d", i))
		code, enq, _ := doJSON(t, req)
		if code != http.StatusAccepted {
			t.Fatalf("API enqueue: %d %v", code, enq)
		}
		// The attempt record a worker writes when an attempt ends.
		id, _ := enq["id"].(string)
		must(t, schema.RecordAttempt(ctx, rdb, p, id, schema.Attempt{StartedAt: time.Now(), DurationMS: 1}).Err())
		sb, err := gw.FindOrCreate(ctx, p.Namespace, p.Name, nil)
		if err != nil {
			t.Fatal(err)
		}
		must(t, store.Upsert(ctx, p, sb.SandboxID, sb.Provider))
		must(t, store.UpsertReady(ctx, p, sb.SandboxID, sb.Provider))
		must(t, store.Touch(ctx, p))
		must(t, store.SetRecheck(ctx, p, time.Now()))
		_, err = store.ServerStatus(ctx, p, sb.SandboxID, "web", events.ServerState{Status: "running", UpdatedAt: time.Now()})
		must(t, err)
		_, err = store.StopServers(ctx, p, sb.SandboxID)
		must(t, err)
		_, err = store.SandboxStatus(ctx, p, sb.SandboxID, tasks.SandboxReady, "")
		must(t, err)
		exerciseManager(t, rdb, gw, store, p)
		exerciseLease(t, rdb, p)
	}
	exerciseScheduler(t, rdb)
}

// projectsOnEveryPrimary returns one project for standalone and sentinel,
// and one project per primary on the cluster.
func projectsOnEveryPrimary(t *testing.T, tp *topology) []tasks.Project {
	if tp.cluster == nil {
		return []tasks.Project{{Namespace: "lua", Name: "p0"}}
	}
	seen := map[string]bool{}
	var out []tasks.Project
	for i := 0; len(out) < 3 && i < 1000; i++ {
		p := tasks.Project{Namespace: "lua", Name: fmt.Sprintf("p%d", i)}
		n, err := tp.cluster.PrimaryFor(t.Context(), schema.RegistryKey(p))
		if err != nil {
			t.Fatal(err)
		}
		if !seen[n.Addr] {
			seen[n.Addr] = true
			out = append(out, p)
		}
	}
	if len(out) != 3 {
		t.Fatalf("projects on %d primaries, want 3", len(out))
	}
	return out
}

func exerciseLease(t *testing.T, rdb redis.UniversalClient, p tasks.Project) {
	ctx := t.Context()
	key := schema.LeaseKey(p)
	must(t, schema.TryAcquire(ctx, rdb, key, "a", time.Minute))
	must(t, schema.TryAcquire(ctx, rdb, key, "a", time.Minute)) // held: renews by script
	if ok, err := schema.RenewLease(ctx, rdb, key, "a", time.Minute); !ok || err != nil {
		t.Fatalf("lease renew: %v %v", ok, err)
	}
	if ok, err := schema.ReleaseLease(ctx, rdb, key, "", "a"); !ok || err != nil {
		t.Fatalf("lease release: %v %v", ok, err)
	}
	// A task's lease: cancel mark and lease in one script, released through
	// a pipeline.
	must(t, schema.MarkCancelled(ctx, rdb, "cancelled", p))
	if _, err := schema.AcquireUnlessCancelled(ctx, rdb, p, "cancelled", time.Minute); !errors.Is(err, schema.ErrCancelled) {
		t.Fatalf("lease of a cancelled task: %v", err)
	}
	held, err := schema.AcquireUnlessCancelled(ctx, rdb, p, "task", time.Minute)
	must(t, err)
	var after func(context.Context) error
	_, err = rdb.Pipelined(ctx, func(pl redis.Pipeliner) error {
		after = held.ReleaseIn(ctx, pl)
		return nil
	})
	must(t, err)
	must(t, after(ctx))
}

// exerciseManager claims a sandbox's watcher, lets the lease renew, and
// shuts down (release).
func exerciseManager(t *testing.T, rdb redis.UniversalClient, gw *gateway.Client, store *events.Store, p tasks.Project) {
	m, err := events.NewManager(events.Config{Redis: rdb, Gateway: gw, Store: store, OwnerID: "lua",
		LeaseTTL: 300 * time.Millisecond, ClaimInterval: 100 * time.Millisecond, SlowPoll: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Run(ctx) }()
	defer func() { cancel(); <-done }()
	must(t, m.Claim(t.Context(), p))
	claimed := time.Now()
	// The lease outliving three TTLs proves it was renewed.
	testutil.Eventually(t, "the watcher lease renewed past 3 TTLs", 10*time.Second, func() bool {
		owner, _ := rdb.Get(t.Context(), schema.WatcherKey(p)).Result()
		return owner == "lua" && time.Since(claimed) > 900*time.Millisecond
	})
}

// exerciseScheduler runs a scheduler until it started two slots (advance
// and finish of the slot marker).
func exerciseScheduler(t *testing.T, rdb redis.UniversalClient) {
	var mu sync.Mutex
	firsts := 0
	s, err := maintenance.NewScheduler(maintenance.SchedulerConfig{Redis: rdb, CleanupSpec: "@every 1s", ReconcileSpec: maintenance.Off,
		OnFire: func(f maintenance.Fire) {
			mu.Lock()
			defer mu.Unlock()
			if f.First {
				firsts++
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Run(ctx) }()
	defer func() { cancel(); <-done }()
	testutil.Eventually(t, "two slots started", 20*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return firsts >= 2
	})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
