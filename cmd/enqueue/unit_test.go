package main

import (
	"flag"
	"reflect"
	"strings"
	"testing"
)

func TestShellJoin(t *testing.T) {
	t.Parallel()
	got := shellJoin([]string{"npm", "run", "build:prod", "--", "a b", "", "it's", "$X", "k=v", "/a/b.c"})
	want := `npm run build:prod -- 'a b' '' 'it'\''s' '$X' k=v /a/b.c`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestIgnoreSet(t *testing.T) {
	t.Parallel()
	s, err := newIgnoreSet([]string{"*.log", "dist", "src/gen/*", "/build/out"})
	if err != nil {
		t.Fatal(err)
	}
	for rel, want := range map[string]bool{
		"a.log": true, "deep/x/a.log": true, "dist": true, "pkg/dist": true,
		"src/gen/a.ts": true, "src/gen": false, "other/src/gen/a.ts": false,
		"build/out": true, "a.txt": false, "distx": false,
	} {
		if got := s.match(rel); got != want {
			t.Errorf("match(%q) = %v, want %v", rel, got, want)
		}
	}
}

func TestParseInterspersed(t *testing.T) {
	t.Parallel()
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	q := fs.String("queue", "", "")
	j := fs.Bool("json", false, "")
	pos, err := parseInterspersed(fs, []string{"id1", "--queue", "critical", "id2", "--json", "--", "--queue", "z"})
	if err != nil {
		t.Fatal(err)
	}
	if *q != "critical" || !*j || !reflect.DeepEqual(pos, []string{"id1", "id2", "--queue", "z"}) {
		t.Errorf("queue %q json %v pos %q", *q, *j, pos)
	}
}

func TestKVMapKeepsValuesOut(t *testing.T) {
	t.Parallel()
	var kv kvMap
	for _, v := range []string{"A=1", "B==2", "A=3", "novalue-secret"} {
		if err := kv.Set(v); err != nil {
			t.Fatalf("Set(%q) = %v; Set must never fail", v, err)
		}
	}
	if !reflect.DeepEqual(kv.Map(), map[string]string{"A": "3", "B": "=2"}) {
		t.Errorf("map %v", kv.Map())
	}
	if kv.err == nil || strings.Contains(kv.err.Error(), "secret") {
		t.Errorf("err %v: want a problem that does not quote the argument", kv.err)
	}
}
