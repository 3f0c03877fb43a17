package events

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/sandboxq/sandboxq"
	"github.com/sandboxq/sandboxq/schema"
	"github.com/sandboxq/sandboxq/tasks"
)

// ErrNotFound is returned when a project has no registry entry.
var ErrNotFound = errors.New("events: project has no registry entry")

// Registry hash fields (schema.RegistryKey), as named by package schema.
const (
	FieldNamespace = schema.FieldNamespace
	FieldName      = schema.FieldName
	FieldSandboxID = schema.FieldSandboxID
	FieldProvider  = schema.FieldProvider
	FieldStatus    = schema.FieldStatus
	FieldError     = schema.FieldError
	FieldServers   = schema.FieldServers
	FieldLastEvent = schema.FieldLastEvent
	FieldLastUsed  = schema.FieldLastUsed
	FieldCreatedAt = schema.FieldCreatedAt
	FieldUpdatedAt = schema.FieldUpdatedAt
	FieldWatcher   = schema.FieldWatcher
	FieldCheckedAt = schema.FieldCheckedAt
)

// DefaultMaxLen is the default approximate cap of a project's event stream.
const DefaultMaxLen = 10000

// ServerState is what the registry knows of one server of a sandbox.
type ServerState struct {
	Status    string    `json:"status"`
	URL       string    `json:"url,omitempty"`
	Port      int       `json:"port,omitempty"`
	ExitCode  *int      `json:"exit_code,omitempty"`
	Error     string    `json:"error,omitempty"`
	UpdatedAt time.Time `json:"updated_at"`
	// Logs is the tail of the server's output on a transition to failed
	// or stopped (gateway.LogTail). It travels on the event only; the
	// registry does not keep it.
	Logs string `json:"-"`
}

// Entry is a project's registry entry.
type Entry struct {
	Namespace string                 `json:"namespace"`
	Name      string                 `json:"name"`
	SandboxID string                 `json:"sandbox_id"`
	Provider  string                 `json:"provider"`
	Status    string                 `json:"status"`
	Error     string                 `json:"error"`
	Servers   map[string]ServerState `json:"servers"`
	LastEvent *tasks.Event           `json:"last_event"`
	LastUsed  time.Time              `json:"last_used"`
	CreatedAt time.Time              `json:"created_at"`
	UpdatedAt time.Time              `json:"updated_at"`
	Watcher   string                 `json:"watcher"`
	// RecheckAt is when maintenance:reconcile asks the gateway about the
	// sandbox again while a watcher follows it (zero: at its next run).
	RecheckAt time.Time `json:"-"`
}

// Project returns the entry's project.
func (e Entry) Project() tasks.Project {
	return tasks.Project{Namespace: e.Namespace, Name: e.Name}
}

// StoreConfig configures a Store.
type StoreConfig struct {
	// MaxLen is the approximate cap of each project's stream (XADD MAXLEN
	// ~). Zero or less: DefaultMaxLen.
	MaxLen int64
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Store reads and writes the registry and appends events. It is safe for
// concurrent use.
type Store struct {
	rdb    redis.UniversalClient
	maxLen int64
	now    func() time.Time
}

// NewStore returns a Store over rdb.
func NewStore(rdb redis.UniversalClient, cfg StoreConfig) *Store {
	cfg.withDefaults()
	return &Store{rdb: rdb, maxLen: cfg.MaxLen, now: cfg.Now}
}

// withDefaults fills the zero values with their documented defaults. A
// StoreConfig has nothing to reject (NewStore returns no error): a MaxLen
// of zero or less is the default.
func (c *StoreConfig) withDefaults() {
	if c.MaxLen <= 0 {
		c.MaxLen = DefaultMaxLen
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Redis returns the client the store uses.
func (s *Store) Redis() redis.UniversalClient { return s.rdb }

func checkProject(p tasks.Project) (tasks.Project, error) {
	p = p.Normalize()
	if err := p.Validate(); err != nil {
		return p, fmt.Errorf("events: invalid project: %w", err)
	}
	return p, nil
}

// eventJSON encodes e without its id: the stream form.
func eventJSON(e tasks.Event) (string, error) {
	e.ID = ""
	b, err := json.Marshal(e)
	if err != nil {
		return "", err
	}
	const prefix = `{"id":"",`
	if !strings.HasPrefix(string(b), prefix) {
		return "", fmt.Errorf("events: unexpected event encoding")
	}
	return "{" + string(b[len(prefix):]), nil
}

func ms(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }

// finish turns a script reply (0 absent, 1 no transition, {entry id,
// sandbox id}) into the emitted event or nil.
func finish(res any, e tasks.Event, p tasks.Project) (*tasks.Event, error) {
	switch v := res.(type) {
	case int64:
		if v == 0 {
			return nil, fmt.Errorf("events: %s/%s: %w", p.Namespace, p.Name, ErrNotFound)
		}
		return nil, nil
	case []any:
		if len(v) == 2 {
			id, _ := v[0].(string)
			sid, _ := v[1].(string)
			e.ID, e.SandboxID = id, sid
			return &e, nil
		}
	case nil:
		return nil, nil
	}
	return nil, fmt.Errorf("events: unexpected script reply %v", res)
}

func runScript(ctx context.Context, rdb redis.UniversalClient, sc *redis.Script, keys []string, args ...any) (any, error) {
	res, err := sc.Run(ctx, rdb, keys, args...).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	return res, err
}

// Upsert records that project p has sandbox sandboxID (status "ready"),
// sets last_used and adds p to the index. A sandbox id new for the project
// (first sandbox, or a replacement) resets the servers and emits
// sandbox.status_changed{created}; the same id whose status was not
// "ready" emits sandbox.status_changed{ready}.
func (s *Store) Upsert(ctx context.Context, p tasks.Project, sandboxID, provider string) error {
	return s.upsert(ctx, p, sandboxID, provider, false)
}

// UpsertReady is Upsert for a sandbox the gateway reports ready, such as
// one sandbox:ensure has just created: a sandbox id new for the project
// emits sandbox.status_changed{created} and then {ready}, so the stream
// says what the registry records.
func (s *Store) UpsertReady(ctx context.Context, p tasks.Project, sandboxID, provider string) error {
	return s.upsert(ctx, p, sandboxID, provider, true)
}

func (s *Store) upsert(ctx context.Context, p tasks.Project, sandboxID, provider string, alsoReady bool) error {
	p, err := checkProject(p)
	if err != nil {
		return err
	}
	if sandboxID == "" {
		return errors.New("events: upsert: empty sandbox id")
	}
	now := s.now()
	base := tasks.Event{Type: tasks.EventSandboxStatusChanged, Namespace: p.Namespace, Name: p.Name, SandboxID: sandboxID, Timestamp: now.UTC()}
	created, ready := base, base
	created.Status = tasks.SandboxCreated
	ready.Status = tasks.SandboxReady
	cj, err := eventJSON(created)
	if err != nil {
		return err
	}
	rj, err := eventJSON(ready)
	if err != nil {
		return err
	}
	_, err = runScript(ctx, s.rdb, schema.RegistryUpsert, []string{schema.RegistryKey(p), schema.EventsKey(p)},
		p.Namespace, p.Name, sandboxID, provider, ms(now), cj, rj, s.maxLen, schema.EventsChannel(p), schema.AllEventsChannel, flag(alsoReady))
	if err != nil {
		return fmt.Errorf("events: upsert %s/%s: %w", p.Namespace, p.Name, err)
	}
	if err := s.rdb.ZAdd(ctx, schema.RegistryIndexKey, redis.Z{Score: float64(now.UnixMilli()), Member: schema.IndexMember(p)}).Err(); err != nil {
		return fmt.Errorf("events: index %s/%s: %w", p.Namespace, p.Name, err)
	}
	return nil
}

// Touch sets the project's last_used (and index score) to now, in one
// pipelined round trip (TouchIn). It returns ErrNotFound if the project has
// no entry.
func (s *Store) Touch(ctx context.Context, p tasks.Project) error {
	var check func() error
	_, _ = s.rdb.Pipelined(ctx, func(pl redis.Pipeliner) error {
		check = s.TouchIn(ctx, pl, p)
		return nil
	})
	return check()
}

// TouchIn queues Touch on pl, so that it can share a round trip with other
// writes, and returns the function that, once pl ran, gives Touch's
// result. The index score is refreshed for a member the index has (ZADD
// XX); should the index miss a registered project, the function adds it
// in a round trip of its own.
func (s *Store) TouchIn(ctx context.Context, pl redis.Pipeliner, p tasks.Project) func() error {
	p, err := checkProject(p)
	if err != nil {
		return func() error { return err }
	}
	now := s.now()
	z := redis.Z{Score: float64(now.UnixMilli()), Member: schema.IndexMember(p)}
	touched := schema.RegistryTouch.Eval(ctx, pl, []string{schema.RegistryKey(p)}, ms(now))
	indexed := pl.ZAddArgs(ctx, schema.RegistryIndexKey, redis.ZAddArgs{XX: true, Ch: true, Members: []redis.Z{z}})
	return func() error {
		n, err := touched.Int()
		if err != nil {
			return fmt.Errorf("events: touch %s/%s: %w", p.Namespace, p.Name, err)
		}
		if n == 0 {
			return fmt.Errorf("events: touch %s/%s: %w", p.Namespace, p.Name, ErrNotFound)
		}
		changed, err := indexed.Result()
		if err == nil && changed == 0 {
			// Not in the index (or already at this score): add it.
			err = s.rdb.ZAdd(ctx, schema.RegistryIndexKey, z).Err()
		}
		if err != nil {
			return fmt.Errorf("events: index %s/%s: %w", p.Namespace, p.Name, err)
		}
		return nil
	}
}

// ServerStatus folds an observation of server slug into the registry. If
// it is a real transition (another status, or the same status with a
// different url, port or exit code than the one recorded) it appends one
// event to the stream, publishes it and returns it; otherwise it returns
// (nil, nil). The compare and the
// write are one Lua script, so two sources reporting the same transition
// produce one event.
//
// st.UpdatedAt is when the source says the state began (the daemon's
// updated_at, the events service's timestamp), zero if unknown (then the
// store's clock is recorded). The registry keeps, per server, the newest
// such time seen; an observation older than it (to the millisecond), or of
// the same millisecond but earlier in the lifecycle (installing < starting,
// restarting < running < ready < stopped, failed), is stale and ignored, so
// a poll answer overtaken by a signal cannot move a server back. For the
// same status, a field the observation leaves out keeps its recorded value,
// and a field recorded as unknown that the observation fills in (an events
// service line first, the poll with every field after) is folded in
// without an event: it is the same transition, better known.
//
// sandboxID "" means the project's current sandbox; an observation of
// another sandbox than the current one, or of a destroyed sandbox, is
// ignored (nil, nil). ErrNotFound if the project has no entry.
func (s *Store) ServerStatus(ctx context.Context, p tasks.Project, sandboxID, slug string, st ServerState) (*tasks.Event, error) {
	p, err := checkProject(p)
	if err != nil {
		return nil, err
	}
	if slug == "" {
		return nil, errors.New("events: server status: empty server name")
	}
	if st.Status == "" {
		return nil, fmt.Errorf("events: server status of %q: empty status", slug)
	}
	if st.Port < 0 || st.Port > 65535 {
		return nil, fmt.Errorf("events: server status of %q: port %d out of range", slug, st.Port)
	}
	now := s.now()
	var obsMS int64
	if st.UpdatedAt.IsZero() {
		st.UpdatedAt = now
	} else {
		obsMS = st.UpdatedAt.UnixMilli()
	}
	st.UpdatedAt = st.UpdatedAt.UTC()
	sj, err := json.Marshal(st)
	if err != nil {
		return nil, err
	}
	e := tasks.Event{
		Type: tasks.EventServerStatusChanged, Namespace: p.Namespace, Name: p.Name, SandboxID: sandboxID,
		Timestamp: now.UTC(), ServerName: slug, Status: st.Status, URL: st.URL, Port: st.Port,
		ExitCode: st.ExitCode, Error: st.Error, Logs: st.Logs,
	}
	ej, err := eventJSON(e)
	if err != nil {
		return nil, err
	}
	res, err := runScript(ctx, s.rdb, schema.RegistryServer, []string{schema.RegistryKey(p), schema.EventsKey(p)},
		sandboxID, slug, string(sj), obsMS, ej, ms(now), s.maxLen, schema.EventsChannel(p), schema.AllEventsChannel)
	if err != nil {
		return nil, fmt.Errorf("events: server status %s/%s %s: %w", p.Namespace, p.Name, slug, err)
	}
	return finish(res, e, p)
}

// SandboxStatus folds the sandbox's status (created|ready|destroyed|error)
// and error message into the registry; a change of status appends,
// publishes and returns one event, the same status returns (nil, nil).
// sandboxID "" means the current sandbox; another id than the current one
// is ignored. ErrNotFound if the project has no entry.
func (s *Store) SandboxStatus(ctx context.Context, p tasks.Project, sandboxID, status, errMsg string) (*tasks.Event, error) {
	p, err := checkProject(p)
	if err != nil {
		return nil, err
	}
	switch status {
	case tasks.SandboxCreated, tasks.SandboxReady, tasks.SandboxDestroyed, tasks.SandboxError:
	default:
		return nil, fmt.Errorf("events: sandbox status %q is not one of created, ready, destroyed, error", status)
	}
	now := s.now()
	e := tasks.Event{
		Type: tasks.EventSandboxStatusChanged, Namespace: p.Namespace, Name: p.Name, SandboxID: sandboxID,
		Timestamp: now.UTC(), Status: status, Error: errMsg,
	}
	ej, err := eventJSON(e)
	if err != nil {
		return nil, err
	}
	res, err := runScript(ctx, s.rdb, schema.RegistrySandbox, []string{schema.RegistryKey(p), schema.EventsKey(p)},
		sandboxID, status, errMsg, ej, ms(now), s.maxLen, schema.EventsChannel(p), schema.AllEventsChannel)
	if err != nil {
		return nil, fmt.Errorf("events: sandbox status %s/%s: %w", p.Namespace, p.Name, err)
	}
	return finish(res, e, p)
}

func flag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// StopServers records every server of the project's sandbox sandboxID
// ("" = the current one) that the registry does not already list as
// stopped as stopped, without its URL (the link is dead), and emits one
// server.status_changed{stopped} per such server, in slug order. It is
// what a destroy records before the sandbox is marked destroyed (a
// destroyed sandbox's servers are not updated any more). A project
// without an entry, or whose entry is of another sandbox, is left alone.
func (s *Store) StopServers(ctx context.Context, p tasks.Project, sandboxID string) ([]tasks.Event, error) {
	e, err := s.Get(ctx, p)
	switch {
	case errors.Is(err, ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, err
	case sandboxID != "" && e.SandboxID != sandboxID, e.Status == tasks.SandboxDestroyed:
		return nil, nil
	}
	slugs := make([]string, 0, len(e.Servers))
	for slug, st := range e.Servers {
		if st.Status != sandboxq.ServerStopped {
			slugs = append(slugs, slug)
		}
	}
	slices.Sort(slugs)
	var out []tasks.Event
	for _, slug := range slugs {
		prev := e.Servers[slug]
		ev, err := s.ServerStatus(ctx, p, e.SandboxID, slug, ServerState{
			Status: sandboxq.ServerStopped, Port: prev.Port, ExitCode: prev.ExitCode, // UpdatedAt zero: never stale
		})
		if err != nil {
			return out, err
		}
		if ev != nil {
			out = append(out, *ev)
		}
	}
	return out, nil
}

// state reads only the status and sandbox id of p's entry: what a watcher
// checks every slow poll, so it costs one small HMGET rather than an Entry.
func (s *Store) state(ctx context.Context, p tasks.Project) (status, sandboxID string, err error) {
	vals, err := s.rdb.HMGet(ctx, schema.RegistryKey(p), FieldStatus, FieldSandboxID).Result()
	if err != nil {
		return "", "", fmt.Errorf("events: get %s/%s: %w", p.Namespace, p.Name, err)
	}
	st, _ := vals[0].(string)
	id, _ := vals[1].(string)
	if vals[0] == nil && vals[1] == nil {
		return "", "", fmt.Errorf("events: %s/%s: %w", p.Namespace, p.Name, ErrNotFound)
	}
	return st, id, nil
}

// Get returns the project's entry, or ErrNotFound. Watcher is the current
// holder of the project's watcher lease.
func (s *Store) Get(ctx context.Context, p tasks.Project) (*Entry, error) {
	p, err := checkProject(p)
	if err != nil {
		return nil, err
	}
	var h *redis.MapStringStringCmd
	var w *redis.StringCmd
	_, err = s.rdb.Pipelined(ctx, func(pl redis.Pipeliner) error {
		h = pl.HGetAll(ctx, schema.RegistryKey(p))
		w = pl.Get(ctx, schema.WatcherKey(p))
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("events: get %s/%s: %w", p.Namespace, p.Name, err)
	}
	m := h.Val()
	if len(m) == 0 {
		return nil, fmt.Errorf("events: %s/%s: %w", p.Namespace, p.Name, ErrNotFound)
	}
	e, err := parseEntry(m)
	if err != nil {
		return nil, fmt.Errorf("events: entry of %s/%s: %w", p.Namespace, p.Name, err)
	}
	e.Watcher = w.Val()
	return e, nil
}

func parseMillis(v string) time.Time {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n == 0 {
		return time.Time{}
	}
	return time.UnixMilli(n).UTC()
}

func parseEntry(m map[string]string) (*Entry, error) {
	e := &Entry{
		Namespace: m[FieldNamespace], Name: m[FieldName], SandboxID: m[FieldSandboxID],
		Provider: m[FieldProvider], Status: m[FieldStatus], Error: m[FieldError],
		LastUsed: parseMillis(m[FieldLastUsed]), CreatedAt: parseMillis(m[FieldCreatedAt]),
		UpdatedAt: parseMillis(m[FieldUpdatedAt]), Watcher: m[FieldWatcher],
		RecheckAt: parseMillis(m[FieldCheckedAt]),
		Servers:   map[string]ServerState{},
	}
	if v := m[FieldServers]; v != "" && v != "{}" {
		if err := json.Unmarshal([]byte(v), &e.Servers); err != nil {
			return nil, fmt.Errorf("field servers: %w", err)
		}
	}
	if v := m[FieldLastEvent]; v != "" {
		var ev tasks.Event
		if err := json.Unmarshal([]byte(v), &ev); err != nil {
			return nil, fmt.Errorf("field last_event: %w", err)
		}
		e.LastEvent = &ev
	}
	return e, nil
}

// ListOptions selects registry entries.
type ListOptions struct {
	// Namespace keeps only that namespace's entries ("" = all).
	Namespace string
	// Status keeps only entries with that status ("" = all).
	Status string
	// Cursor is the next value of a previous page ("" = first page).
	Cursor string
	// Limit is the page size: default 50, max 500.
	Limit int
	// IdleSince, if non-zero, keeps only entries last used before it.
	IdleSince time.Time
}

// Limits of ListOptions.Limit.
const (
	DefaultListLimit = 50
	MaxListLimit     = 500
)

// ProjectOfMember parses a member of schema.RegistryIndexKey
// (schema.ProjectOfMember).
func ProjectOfMember(member string) (tasks.Project, error) { return schema.ProjectOfMember(member) }

func encodeCursor(score int64, member string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(score, 10) + ":" + member))
}

func decodeCursor(c string) (int64, string, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return 0, "", errors.New("events: invalid list cursor")
	}
	sc, member, ok := strings.Cut(string(b), ":")
	n, err := strconv.ParseInt(sc, 10, 64)
	if !ok || err != nil || member == "" {
		return 0, "", errors.New("events: invalid list cursor")
	}
	return n, member, nil
}

// List returns registry entries, most recently used first, one page at a
// time: next is the cursor of the following page, "" after the last.
// Entries whose last_used changes while a caller pages may be seen twice
// or not at all; index members without a hash are skipped.
func (s *Store) List(ctx context.Context, o ListOptions) ([]Entry, string, error) {
	q, err := o.query()
	if err != nil {
		return nil, "", err
	}
	batch := int64(q.limit * 2)
	if batch < 100 {
		batch = 100
	}
	var out []Entry
	var offset int64
	for {
		zs, err := s.rdb.ZRevRangeByScoreWithScores(ctx, schema.RegistryIndexKey, &redis.ZRangeBy{
			Max: q.maxScore, Min: "-inf", Offset: offset, Count: batch,
		}).Result()
		if err != nil {
			return nil, "", fmt.Errorf("events: list: %w", err)
		}
		offset += int64(len(zs))
		var next string
		out, next, err = s.addEntries(ctx, out, q, q.candidates(zs))
		if err != nil || next != "" {
			return out, next, err
		}
		if int64(len(zs)) < batch {
			return out, "", nil
		}
	}
}

// listQuery is a checked ListOptions: what List reads from the index.
type listQuery struct {
	limit  int
	status string
	prefix string // of the index members of the namespace, "" for all
	// maxScore is the ZRANGEBYSCORE max: "+inf", IdleSince (exclusive) or
	// the cursor's score.
	maxScore string
	// after, with afterScore and afterMember, keeps only the members after
	// the cursor's.
	after       bool
	afterScore  int64
	afterMember string
}

func (o ListOptions) query() (listQuery, error) {
	q := listQuery{limit: o.Limit, status: o.Status, maxScore: "+inf", after: o.Cursor != ""}
	if q.limit <= 0 {
		q.limit = DefaultListLimit
	}
	if q.limit > MaxListLimit {
		return q, fmt.Errorf("events: list limit %d is above %d", q.limit, MaxListLimit)
	}
	if o.Namespace != "" {
		np := tasks.Project{Namespace: o.Namespace, Name: "x"}
		if err := np.Validate(); err != nil {
			return q, fmt.Errorf("events: list: %w", err)
		}
		m := schema.IndexMember(np)
		q.prefix = m[:len(m)-1]
	}
	if !o.IdleSince.IsZero() {
		q.maxScore = "(" + strconv.FormatInt(o.IdleSince.UnixMilli(), 10)
	}
	if q.after {
		var err error
		q.afterScore, q.afterMember, err = decodeCursor(o.Cursor)
		if err != nil {
			return q, err
		}
		if o.IdleSince.IsZero() || q.afterScore < o.IdleSince.UnixMilli() {
			q.maxScore = strconv.FormatInt(q.afterScore, 10)
		}
	}
	return q, nil
}

// listCand is an index member that may be listed.
type listCand struct {
	p      tasks.Project
	score  int64
	member string
}

// candidates keeps the index members after the cursor, in the namespace,
// that name a valid project.
func (q listQuery) candidates(zs []redis.Z) []listCand {
	var cands []listCand
	for _, z := range zs {
		member, _ := z.Member.(string)
		score := int64(z.Score)
		if q.after && (score > q.afterScore || (score == q.afterScore && member >= q.afterMember)) {
			continue
		}
		if q.prefix != "" && !strings.HasPrefix(member, q.prefix) {
			continue
		}
		p, err := ProjectOfMember(member)
		if err != nil {
			continue
		}
		cands = append(cands, listCand{p, score, member})
	}
	return cands
}

// addEntries reads the candidates' entries and watchers and appends those
// of the wanted status to out. next is the cursor of the following page
// once out holds a whole page, else "".
func (s *Store) addEntries(ctx context.Context, out []Entry, q listQuery, cands []listCand) ([]Entry, string, error) {
	if len(cands) == 0 {
		return out, "", nil
	}
	hs := make([]*redis.MapStringStringCmd, len(cands))
	ws := make([]*redis.StringCmd, len(cands))
	_, err := s.rdb.Pipelined(ctx, func(pl redis.Pipeliner) error {
		for i, c := range cands {
			hs[i] = pl.HGetAll(ctx, schema.RegistryKey(c.p))
			ws[i] = pl.Get(ctx, schema.WatcherKey(c.p))
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, "", fmt.Errorf("events: list: %w", err)
	}
	for i, c := range cands {
		m := hs[i].Val()
		if len(m) == 0 {
			continue
		}
		e, err := parseEntry(m)
		if err != nil || (q.status != "" && e.Status != q.status) {
			continue
		}
		e.Watcher = ws[i].Val()
		out = append(out, *e)
		if len(out) == q.limit {
			return out, encodeCursor(c.score, c.member), nil
		}
	}
	return out, "", nil
}

// SetRecheck records when maintenance:reconcile should next ask the
// gateway about the project's watched sandbox (Entry.RecheckAt). An entry
// that no longer exists is not created.
func (s *Store) SetRecheck(ctx context.Context, p tasks.Project, at time.Time) error {
	p, err := checkProject(p)
	if err != nil {
		return err
	}
	if err := schema.RegistryRecheck.Run(ctx, s.rdb, []string{schema.RegistryKey(p)}, at.UnixMilli()).Err(); err != nil {
		return fmt.Errorf("events: set recheck of %s/%s: %w", p.Namespace, p.Name, err)
	}
	return nil
}

// Remove drops the project's registry entry and index member (its event
// stream is kept until it is trimmed or expires).
func (s *Store) Remove(ctx context.Context, p tasks.Project) error {
	p, err := checkProject(p)
	if err != nil {
		return err
	}
	if err := s.rdb.Del(ctx, schema.RegistryKey(p)).Err(); err != nil {
		return fmt.Errorf("events: remove %s/%s: %w", p.Namespace, p.Name, err)
	}
	if err := s.rdb.ZRem(ctx, schema.RegistryIndexKey, schema.IndexMember(p)).Err(); err != nil {
		return fmt.Errorf("events: remove %s/%s from index: %w", p.Namespace, p.Name, err)
	}
	return nil
}
