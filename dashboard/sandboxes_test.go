package dashboard_test

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sandboxq/sandboxq/dashboard"
	"github.com/sandboxq/sandboxq/events"
	"github.com/sandboxq/sandboxq/schema"
	"github.com/sandboxq/sandboxq/tasks"
)

type sandboxesResponse struct {
	Sandboxes []struct {
		events.Entry
		IdleSeconds float64 `json:"idle_seconds"`
	} `json:"sandboxes"`
	NextCursor string `json:"next_cursor"`
}

// registry fills the registry: team-a/web (a ready server, watched),
// team-a/api, team-b/shop (failed with an HTML-looking error).
func registry(t *testing.T, b *testBundle) {
	t.Helper()
	ctx := t.Context()
	old := events.NewStore(b.rdb, events.StoreConfig{Now: func() time.Time { return time.Now().Add(-90 * time.Minute) }})
	if err := old.Upsert(ctx, proj("web"), "sbx-web-1", "local"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.store.ServerStatus(ctx, proj("web"), "sbx-web-1", "dev", events.ServerState{
		Status: "ready", URL: "http://127.0.0.1:5173/", Port: 5173, UpdatedAt: time.Now(),
	}); err != nil {
		t.Fatal(err)
	}
	if err := b.rdb.Set(ctx, schema.WatcherKey(proj("web")), "worker-7f3a", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if err := b.store.Upsert(ctx, proj("api"), "sbx-api-2", "local"); err != nil {
		t.Fatal(err)
	}
	shop := tasks.Project{Namespace: "team-b", Name: "shop"}
	if err := b.store.Upsert(ctx, shop, "sbx-shop-3", "local"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.store.SandboxStatus(ctx, shop, "sbx-shop-3", tasks.SandboxError, `<script>alert("x")</script>`); err != nil {
		t.Fatal(err)
	}
}

func names(r sandboxesResponse) []string {
	var out []string
	for _, s := range r.Sandboxes {
		out = append(out, s.Namespace+"/"+s.Name)
	}
	slices.Sort(out)
	return out
}

func TestSandboxesAPI(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	registry(t, b)

	var all sandboxesResponse
	b.getJSON(t, "/api/sandboxes", nil, &all)
	if got := names(all); !slices.Equal(got, []string{"team-a/api", "team-a/web", "team-b/shop"}) || all.NextCursor != "" {
		t.Fatalf("all: %v next=%q", got, all.NextCursor)
	}
	for _, s := range all.Sandboxes {
		if s.Name != "web" {
			continue
		}
		dev, ok := s.Servers["dev"]
		if s.SandboxID != "sbx-web-1" || s.Status != tasks.SandboxReady || !ok || dev.Status != "ready" || dev.URL != "http://127.0.0.1:5173/" ||
			s.Watcher != "worker-7f3a" || s.LastEvent == nil || s.LastEvent.ServerName != "dev" {
			t.Errorf("web entry: %+v", s)
		}
		// Last used 90 minutes ago: the server status change is not use.
		if s.IdleSeconds < 80*60 || s.IdleSeconds > 100*60 {
			t.Errorf("web idle %v s, want about 5400", s.IdleSeconds)
		}
	}

	for q, want := range map[string][]string{
		"namespace=team-a":              {"team-a/api", "team-a/web"},
		"status=error":                  {"team-b/shop"},
		"namespace=team-a&status=error": nil,
		"namespace=nobody":              nil,
	} {
		var r sandboxesResponse
		b.getJSON(t, "/api/sandboxes?"+q, nil, &r)
		if got := names(r); !slices.Equal(got, want) {
			t.Errorf("?%s: %v, want %v", q, got, want)
		}
	}

	// Pages of one, following next_cursor, see every entry once.
	var paged []string
	cursor := ""
	for range 10 {
		var r sandboxesResponse
		b.getJSON(t, "/api/sandboxes?limit=1&cursor="+url.QueryEscape(cursor), nil, &r)
		paged = append(paged, names(r)...)
		if r.NextCursor == "" {
			break
		}
		cursor = r.NextCursor
	}
	slices.Sort(paged)
	if !slices.Equal(paged, names(all)) {
		t.Fatalf("paged: %v, want %v", paged, names(all))
	}

	for q, field := range map[string]string{
		"limit=0":             "limit",
		"limit=501":           "limit",
		"limit=ten":           "limit",
		"status=running":      "status",
		"namespace=a%20b":     "namespace",
		"namespace=%7Bx%7D":   "namespace",
		"cursor=not-a-cursor": "cursor",
	} {
		status, h, body := b.request(t, http.MethodGet, "/api/sandboxes?"+q, nil)
		if status != http.StatusBadRequest || !strings.Contains(body, `"error": "invalid `+field) || h.Get("Content-Type") != "application/json" {
			t.Errorf("?%s: %d %s, want a JSON 400 naming %s", q, status, body, field)
		}
	}
}

func TestSandboxesPage(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *dashboard.Config) { o.Refresh = 3 * time.Second })
	registry(t, b)

	status, h, page := b.request(t, http.MethodGet, "/sandboxes", nil)
	if status != http.StatusOK || !strings.HasPrefix(h.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /sandboxes: %d %s", status, h.Get("Content-Type"))
	}
	mustContain(t, "page", page,
		`data-refresh="3"`, `<a class="project" href="/sandboxes/team-a/web">`,
		"team-a/<b>web</b>", "team-a/<b>api</b>", "team-b/<b>shop</b>",
		"sbx-web-1", `<b>dev</b> <span class="status ready">ready</span>`,
		`<a href="http://127.0.0.1:5173/" target="_blank" rel="noopener noreferrer">`,
		"port 5173", "server.status_changed dev ready", "worker-7f3a",
		"1h30m", // idle time of web
		"&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;",
		`href="/monitoring/"`,
	)
	mustNotContain(t, "page", page, `<script>alert`)

	filtered := b.get(t, "/sandboxes?namespace=team-b", nil)
	mustContain(t, "filtered page", filtered, "team-b/<b>shop</b>", `value="team-b"`)
	mustNotContain(t, "filtered page", filtered, "team-a/<b>web</b>")

	searched := b.get(t, "/sandboxes?q=SHO", nil)
	mustContain(t, "searched page", searched, "team-b/<b>shop</b>", `value="SHO"`)
	mustNotContain(t, "searched page", searched, "team-a/<b>web</b>", "team-a/<b>api</b>")
	rows := b.get(t, "/sandboxes?q=team-a/&fragment=rows", nil)
	mustContain(t, "rows fragment", rows, "team-a/<b>web</b>", "team-a/<b>api</b>")
	mustNotContain(t, "rows fragment", rows, "team-b/<b>shop</b>", "<html", "<form")

	paged := b.get(t, "/sandboxes?limit=1", nil)
	if strings.Count(paged, "<tr data-project=") != 1 || !strings.Contains(paged, `<a href="/sandboxes?cursor=`) {
		t.Errorf("page of one: want one row and a next link:\n%s", paged)
	}

	status, _, bad := b.request(t, http.MethodGet, "/sandboxes?status=%3Cb%3E", nil)
	if status != http.StatusBadRequest || !strings.Contains(bad, "invalid status &#34;&lt;b&gt;&#34;") {
		t.Errorf("bad filter: %d\n%s", status, bad)
	}

	empty := setup(t, func(o *dashboard.Config) { o.Refresh = -1 })
	body := empty.get(t, "/sandboxes", nil)
	mustContain(t, "empty page", body, "No sandboxes.")
	mustContain(t, "empty page", body, `data-refresh="0"`)
	if got := empty.get(t, "/", nil); !strings.Contains(got, "<h1>Sandboxes</h1>") {
		t.Errorf("/ does not lead to the sandboxes page")
	}
}
