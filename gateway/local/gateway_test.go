package local

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sandboxq/sandboxq/gateway"
	"github.com/sandboxq/sandboxq/internal/secret"
)

type envelope struct {
	Success bool             `json:"success"`
	Data    *gateway.Sandbox `json:"data"`
	Error   string           `json:"error"`
}

func TestGatewayBothPathStyles(t *testing.T) {
	t.Parallel()
	p := startProvider(t, Config{})
	idRE := regexp.MustCompile(`^sbx_[0-9a-f]{16}$`)
	for _, prefix := range []string{"/v1/sandbox", "/v1/sandboxes"} {
		t.Run(strings.TrimPrefix(prefix, "/v1/"), func(t *testing.T) {
			t.Parallel()
			record := func(r resp) *gateway.Sandbox {
				t.Helper()
				if r.status != http.StatusOK {
					t.Fatalf("status %d: %s", r.status, r.body)
				}
				if ct := r.header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("Content-Type %q", ct)
				}
				var env envelope
				r.decode(t, &env)
				if !env.Success {
					t.Fatalf("success false: %s", r.body)
				}
				return env.Data
			}

			created := record(gw(t, p, http.MethodPost, prefix, map[string]any{"metadata": map[string]any{"k": "v"}}))
			if !idRE.MatchString(created.SandboxID) {
				t.Errorf("sandboxId %q", created.SandboxID)
			}
			if want := p.URL() + "/s/" + created.SandboxID; created.URL != want {
				t.Errorf("url %q, want %q", created.URL, want)
			}
			if created.Token == "" || created.Provider != "local" || created.Status != "ready" || created.Metadata["k"] != "v" {
				t.Errorf("record %+v", created)
			}

			got := record(gw(t, p, http.MethodGet, prefix+"/"+created.SandboxID, nil))
			if got.SandboxID != created.SandboxID || got.Token != created.Token || got.URL != created.URL {
				t.Errorf("get %+v, want %+v", got, created)
			}

			r := gw(t, p, http.MethodPost, prefix+"/"+created.SandboxID+"/extend", map[string]any{"duration": 900000})
			if r.status != http.StatusOK || strings.TrimSpace(string(r.body)) != `{"success":true}` {
				t.Errorf("extend: %d %s", r.status, r.body)
			}

			name := "app" + strings.ReplaceAll(prefix, "/", "-")
			foc := record(gw(t, p, http.MethodPost, prefix+"/find-or-create", map[string]any{"name": name}))
			if foc.Name != name || foc.Namespace != "default" || foc.SandboxID == created.SandboxID {
				t.Errorf("find-or-create %+v", foc)
			}
			again := record(gw(t, p, http.MethodPost, prefix+"/find-or-create", map[string]any{"name": name, "namespace": "default"}))
			if again.SandboxID != foc.SandboxID || again.Token != foc.Token {
				t.Errorf("second find-or-create gave %s, want %s", again.SandboxID, foc.SandboxID)
			}
			found := record(gw(t, p, http.MethodPost, prefix+"/find", map[string]any{"name": name}))
			if found == nil || found.SandboxID != foc.SandboxID {
				t.Errorf("find %+v", found)
			}

			miss := gw(t, p, http.MethodPost, prefix+"/find", map[string]any{"name": "nobody"})
			if miss.status != http.StatusOK {
				t.Fatalf("find miss: %d %s", miss.status, miss.body)
			}
			m := miss.object(t)
			if v, ok := m["data"]; !ok || v != nil || m["success"] != true {
				t.Errorf("find miss body %s", miss.body)
			}

			// The daemon answers under the record's url with its token.
			h := do(t, http.MethodGet, foc.URL+"/health", map[string]string{"Authorization": "Bearer " + foc.Token}, nil)
			var health gateway.Health
			h.decode(t, &health)
			if _, err := time.Parse(time.RFC3339, health.Timestamp); h.status != http.StatusOK || health.Status != "ok" || err != nil {
				t.Errorf("health %d %s", h.status, h.body)
			}

			for _, id := range []string{created.SandboxID, foc.SandboxID} {
				r := gw(t, p, http.MethodDelete, prefix+"/"+id, nil)
				if r.status != http.StatusOK || strings.TrimSpace(string(r.body)) != `{"success":true}` {
					t.Errorf("delete: %d %s", r.status, r.body)
				}
				for _, method := range []string{http.MethodGet, http.MethodDelete} {
					r = gw(t, p, method, prefix+"/"+id, nil)
					if r.status != http.StatusNotFound || strings.TrimSpace(string(r.body)) != `{"success":false,"error":"not found"}` {
						t.Errorf("%s after delete: %d %s", method, r.status, r.body)
					}
				}
			}
			r = gw(t, p, http.MethodPost, prefix+"/"+foc.SandboxID+"/extend", nil)
			if r.status != http.StatusNotFound {
				t.Errorf("extend unknown: %d %s", r.status, r.body)
			}
			// find after destroy is a miss, find-or-create makes a new one.
			miss = gw(t, p, http.MethodPost, prefix+"/find", map[string]any{"name": name})
			if miss.object(t)["data"] != nil {
				t.Errorf("find after destroy: %s", miss.body)
			}
			fresh := record(gw(t, p, http.MethodPost, prefix+"/find-or-create", map[string]any{"name": name}))
			if fresh.SandboxID == foc.SandboxID {
				t.Errorf("find-or-create after destroy reused %s", fresh.SandboxID)
			}
		})
	}
}

func TestGatewayAuth(t *testing.T) {
	t.Parallel()
	p := startProvider(t, Config{APIKey: secret.New("local_test_key")})
	if p.APIKey().Reveal() != "local_test_key" {
		t.Fatalf("APIKey %q", p.APIKey().Reveal())
	}
	for _, key := range []string{"", "local_test_ke", "local_test_key2", "LOCAL_TEST_KEY"} {
		hdr := map[string]string{}
		if key != "" {
			hdr["X-ComputeSDK-API-Key"] = key
		}
		r := do(t, http.MethodPost, p.URL()+"/v1/sandboxes", hdr, map[string]any{})
		if r.status != http.StatusUnauthorized {
			t.Errorf("key %q: status %d", key, r.status)
		}
		if m := r.object(t); m["success"] != false || m["error"] == "" {
			t.Errorf("key %q: body %s", key, r.body)
		}
	}
	a := newSandbox(t, p, nil)
	b := newSandbox(t, p, nil)
	if a.rec.Token == b.rec.Token {
		t.Fatal("two sandboxes share a token")
	}
	cases := []struct {
		name string
		url  string
		hdr  map[string]string
		want int
	}{
		{"bearer", a.rec.URL + "/health", map[string]string{"Authorization": "Bearer " + a.rec.Token}, 200},
		{"query", a.rec.URL + "/health?token=" + a.rec.Token, nil, 200},
		{"none", a.rec.URL + "/health", nil, 401},
		{"other sandbox's token", a.rec.URL + "/health", map[string]string{"Authorization": "Bearer " + b.rec.Token}, 401},
		{"api key is not a token", a.rec.URL + "/health", map[string]string{"Authorization": "Bearer " + p.APIKey().Reveal()}, 401},
		{"basic", a.rec.URL + "/health", map[string]string{"Authorization": "Basic " + a.rec.Token}, 401},
		{"files without token", a.rec.URL + "/files", nil, 401},
		{"unknown sandbox", p.URL() + "/s/sbx_0000000000000000/health", map[string]string{"Authorization": "Bearer " + a.rec.Token}, 404},
	}
	for _, c := range cases {
		r := do(t, http.MethodGet, c.url, c.hdr, nil)
		if r.status != c.want {
			t.Errorf("%s: status %d, want %d: %s", c.name, r.status, c.want, r.body)
		}
		if c.want == 401 {
			if msg := r.errorText(t); strings.Contains(msg, a.rec.Token) {
				t.Errorf("%s: error leaks the token", c.name)
			}
		}
	}
}

func TestFindOrCreateConcurrentCreatesOne(t *testing.T) {
	t.Parallel()
	p := startProvider(t, Config{})
	const n = 50
	ids := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			r, err := tryDo(t, http.MethodPost, p.URL()+"/v1/sandboxes/find-or-create",
				map[string]string{"X-ComputeSDK-API-Key": p.APIKey().Reveal()},
				map[string]any{"namespace": "tenant", "name": "proj"})
			if err != nil {
				t.Error(err)
				return
			}
			var env envelope
			if err := json.Unmarshal(r.body, &env); err != nil || r.status != http.StatusOK || env.Data == nil {
				t.Errorf("call %d: %d %s", i, r.status, r.body)
				return
			}
			ids[i] = env.Data.SandboxID
		})
	}
	wg.Wait()
	for i, id := range ids {
		if id != ids[0] {
			t.Fatalf("call %d got %s, call 0 got %s", i, id, ids[0])
		}
	}
	count := 0
	for _, v := range p.Sandboxes() {
		if v.Namespace == "tenant" && v.Name == "proj" {
			count++
		}
	}
	if count != 1 || len(p.Sandboxes()) != 1 {
		t.Fatalf("%d sandboxes for tenant/proj, %d in all", count, len(p.Sandboxes()))
	}

	// Other namespaces are isolated; the default namespace is "default".
	other := newSandbox(t, p, map[string]any{"namespace": "other", "name": "proj"})
	def := newSandbox(t, p, map[string]any{"name": "proj"})
	if other.rec.SandboxID == ids[0] || def.rec.SandboxID == ids[0] || other.rec.SandboxID == def.rec.SandboxID {
		t.Fatalf("namespaces share sandboxes: %s %s %s", ids[0], other.rec.SandboxID, def.rec.SandboxID)
	}
	if def.rec.Namespace != "default" {
		t.Errorf("namespace %q", def.rec.Namespace)
	}
	r := gw(t, p, http.MethodPost, "/v1/sandboxes/find", map[string]any{"namespace": "other", "name": "proj"})
	var env envelope
	r.decode(t, &env)
	if env.Data == nil || env.Data.SandboxID != other.rec.SandboxID {
		t.Errorf("find other/proj: %s", r.body)
	}
}

func TestGatewayRejectsBadInput(t *testing.T) {
	t.Parallel()
	p := startProvider(t, Config{})
	cases := []struct {
		name, method, path string
		body               any
		want               int
		mention            string
	}{
		{"no name", "POST", "/v1/sandboxes/find-or-create", map[string]any{"namespace": "x"}, 400, "name is required"},
		{"space in name", "POST", "/v1/sandboxes/find", map[string]any{"name": "a b"}, 400, "name"},
		{"brace in namespace", "POST", "/v1/sandboxes/find-or-create", map[string]any{"name": "a", "namespace": "{x}"}, 400, "namespace"},
		{"long name", "POST", "/v1/sandboxes/find-or-create", map[string]any{"name": strings.Repeat("n", 129)}, 400, "longer than 128"},
		{"bad json", "POST", "/v1/sandboxes", "{", 400, "invalid JSON"},
		{"empty find body", "POST", "/v1/sandboxes/find", nil, 400, "empty"},
		{"wrong method", "PUT", "/v1/sandboxes", map[string]any{}, 405, "not allowed"},
		{"unknown path", "GET", "/v1/sandboxes/a/b/c", nil, 404, "not found"},
	}
	for _, c := range cases {
		r := gw(t, p, c.method, c.path, c.body)
		if r.status != c.want {
			t.Errorf("%s: status %d, want %d: %s", c.name, r.status, c.want, r.body)
			continue
		}
		if msg := r.errorText(t); !strings.Contains(msg, c.mention) {
			t.Errorf("%s: error %q does not mention %q", c.name, msg, c.mention)
		}
	}
	if n := len(p.Sandboxes()); n != 0 {
		t.Errorf("%d sandboxes created by bad requests", n)
	}
}

func TestStartRefusesNonLoopback(t *testing.T) {
	t.Parallel()
	for _, addr := range []string{":0", "0.0.0.0:0", "[::]:0"} {
		if p, err := Start(Config{Addr: addr}); err == nil {
			p.Close()
			t.Errorf("Start(%q) succeeded without AllowNonLoopback", addr)
		} else if !strings.Contains(err.Error(), "AllowNonLoopback") {
			t.Errorf("Start(%q): %v", addr, err)
		}
	}
	p := startProvider(t, Config{Addr: "localhost:0"})
	if !strings.HasPrefix(p.URL(), "http://127.0.0.1:") && !strings.HasPrefix(p.URL(), "http://[::1]:") {
		t.Errorf("URL %q", p.URL())
	}
}
