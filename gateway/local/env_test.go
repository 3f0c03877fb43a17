package local

import (
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/sandboxq/sandboxq/gateway"
)

func TestParseDotenv(t *testing.T) {
	t.Parallel()
	src := "# comment\n" +
		"A=1\n" +
		"export B = two words # trailing comment\n" +
		"C='single $literal \\n'\n" +
		"D=\"double \\\"q\\\" \\n \\\\ \\$x\"\n" +
		"E=\"multi\nline\"\n" +
		"not an assignment\n" +
		"F=\n" +
		"G=#not-a-comment\n" +
		"H=a#b\n" +
		"A=override\n" +
		"I=last-no-newline"
	got := envVars(parseDotenv(src))
	want := map[string]string{
		"A": "override",
		"B": "two words",
		"C": `single $literal \n`,
		"D": "double \"q\" \n \\ $x",
		"E": "multi\nline",
		"F": "",
		"G": "",
		"H": "a#b",
		"I": "last-no-newline",
	}
	if !maps.Equal(got, want) {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	// Unparsed text is kept byte for byte.
	var back string
	for _, e := range parseDotenv(src) {
		back += e.raw
	}
	if back != src {
		t.Errorf("round trip changed the text:\n%q", back)
	}
}

func TestFormatEnvLineRoundTrips(t *testing.T) {
	t.Parallel()
	values := []string{
		"", "plain", "with space", "it's", `say "hi"`, "a#b", " # c", "line1\nline2", "cr\r", `back\slash`,
		"$HOME", "${X}", "'", `"`, "ünïcödé", "tab\there", "=eq=", "trailing ", `\n literal`, "'\n'",
	}
	for _, v := range values {
		line := formatEnvLine("K", v)
		got := envVars(parseDotenv(line))
		if got["K"] != v || len(got) != 1 {
			t.Errorf("value %q: line %q parses as %q", v, line, got)
		}
	}
}

func TestEnvEndpoints(t *testing.T) {
	t.Parallel()
	p := startProvider(t, Config{})
	s := newSandbox(t, p, nil)
	dir := s.dir()

	s.must(http.StatusNotFound, http.MethodHead, "/env?file=.env", nil)
	r := s.must(http.StatusOK, http.MethodGet, "/env?file=.env", nil)
	if m := r.object(t); m["status"] != "success" || m["message"] == nil {
		t.Errorf("envelope %s", r.body)
	}
	if got := data[gateway.EnvFile](t, r); got.File != ".env" || len(got.Variables) != 0 {
		t.Errorf("missing file: %+v", got)
	}

	if err := os.WriteFile(filepath.Join(dir, ".env"), []byte("# keep me\nKEEP=1\nB=old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r = s.must(http.StatusOK, http.MethodPost, "/env?file=.env", map[string]any{"variables": map[string]string{"B": "new value", "A": "x"}})
	if ch := data[gateway.EnvChange](t, r); ch.File != ".env" || !slices.Equal(ch.Keys, []string{"A", "B"}) {
		t.Errorf("post: %s", r.body)
	}
	b, _ := os.ReadFile(filepath.Join(dir, ".env"))
	if string(b) != "# keep me\nKEEP=1\nB='new value'\nA=x\n" {
		t.Errorf("file after merge:\n%s", b)
	}
	s.must(http.StatusOK, http.MethodHead, "/env?file=.env", nil)

	// DELETE carries a body; it reports the keys that were there.
	r = s.must(http.StatusOK, http.MethodDelete, "/env?file=.env", map[string]any{"keys": []string{"B", "MISSING"}})
	if ch := data[gateway.EnvChange](t, r); !slices.Equal(ch.Keys, []string{"B"}) {
		t.Errorf("delete: %s", r.body)
	}
	got := data[gateway.EnvFile](t, s.must(http.StatusOK, http.MethodGet, "/env?file=.env", nil)).Variables
	if !maps.Equal(got, map[string]string{"KEEP": "1", "A": "x"}) {
		t.Errorf("after delete: %v", got)
	}

	// Nested files are created; bad input is refused with what is wrong.
	s.must(http.StatusOK, http.MethodPost, "/env?file=/app/.env.local", map[string]any{"variables": map[string]string{"Q": "a\nb"}})
	if got := data[gateway.EnvFile](t, s.must(http.StatusOK, http.MethodGet, "/env?file=app/.env.local", nil)).Variables; got["Q"] != "a\nb" {
		t.Errorf("nested: %v", got)
	}
	for _, c := range []struct {
		method, path string
		body         any
	}{
		{"GET", "/env", nil},
		{"POST", "/env?file=.env", map[string]any{"variables": map[string]string{"1BAD": "x"}}},
		{"POST", "/env?file=.env", map[string]any{"variables": map[string]string{"A-B": "x"}}},
		{"POST", "/env?file=.env", "not json"},
		{"DELETE", "/env?file=.env", nil},
		{"GET", "/env?file=../../x", nil},
	} {
		if r := s.do(c.method, c.path, c.body); r.status != http.StatusBadRequest {
			t.Errorf("%s %s: %d %s", c.method, c.path, r.status, r.body)
		}
	}
}
