package tasks

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/hibiken/asynq"
)

// projectByJSON is what ProjectOf returned when it decoded the whole
// payload with encoding/json: the reference the scan must agree with.
func projectByJSON(body []byte) (Project, bool) {
	var p Project
	if json.Unmarshal(body, &p) != nil || p.Name == "" {
		return Project{}, false
	}
	return p.Normalize(), true
}

func pr(ns, name string) Project { return Project{Namespace: ns, Name: name} }

func gzipped(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestProjectOfScan(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("x", 3<<20)
	cases := []struct {
		body string
		want Project
		ok   bool
	}{
		{`{"namespace":"acme","name":"shop"}`, pr("acme", "shop"), true},
		{`{"name":"shop"}`, pr("default", "shop"), true},
		{` { "files" : [ {"path":"a","content":"` + big + `"} ] , "name" : "shop" } `, pr("default", "shop"), true},
		{`{"name":"a","name":"b"}`, pr("default", "b"), true},  // last wins
		{`{"NAME":"a","NameSpace":"n"}`, pr("n", "a"), true},   // case-insensitive
		{`{"n\u0061me":"a\"b"}`, pr("default", `a"b`), true},   // escapes
		{`{"name":"a","name":null}`, pr("default", "a"), true}, // null keeps
		{`{"x":{"name":"inner"},"y":[1,-2.5e3,true,false,null,"]}"],"name":"outer"}`, pr("default", "outer"), true},
		{`{"nameſpace":"x","name":"k"}`, pr("x", "k"), true}, // ſ folds to S
		{`{"name":5}`, Project{}, false},
		{`{"name":""}`, Project{}, false},
		{`{}`, Project{}, false},
		{`[{"name":"a"}]`, Project{}, false},
		{`{"name":"a"} trailing`, Project{}, false},
		{`{"name":"a",}`, Project{}, false},
		{`{"name":"a"`, Project{}, false},
		{`{"x":[}],"name":"a"}`, Project{}, false},
		{`{"name":"` + strings.Repeat("a", maxScanValue+1) + `"}`, Project{}, false},
		{``, Project{}, false},
	}
	for _, c := range cases {
		for _, compress := range []bool{false, true} {
			payload := []byte(c.body)
			if compress {
				payload = gzipped(t, payload)
			}
			got, ok := ProjectOf(asynq.NewTask(TypeFilesWrite, payload))
			if ref, rok := projectByJSON([]byte(c.body)); json.Valid([]byte(c.body)) && len(c.body) < maxScanValue && (ref != c.want || rok != c.ok) {
				t.Errorf("case %.60q: encoding/json reads %+v, %v", c.body, ref, rok)
			}
			if got != c.want || ok != c.ok {
				t.Errorf("ProjectOf(%.60q, gzip %v) = %+v, %v; want %+v, %v", c.body, compress, got, ok, c.want, c.ok)
			}
		}
	}
}

// FuzzProjectOf: wherever encoding/json reads a project off a payload, the
// streaming scan reads the same one.
func FuzzProjectOf(f *testing.F) {
	for _, s := range []string{
		`{"namespace":"acme","name":"shop"}`,
		`{"name":"a","files":[{"path":"p","content":"c\\\"\n"}],"name":"b"}`,
		`{"NAME":"a","nAmEsPaCe":"n","Namespace":"m"}`,
		`{"n\u0061me":"\u00e9"}`,
		`{"name":"a","x":{"y":[1,2,{"z":"}"}]}}`,
		`{"name":null}`, `{"name":"a","name":null}`,
		"{\"name\":\"\xff\"}",
		`{"ſame":"x","ＮＡＭＥ":"y"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		want, wok := projectByJSON(body)
		if !json.Valid(body) {
			return // the scan checks structure only as far as it needs
		}
		got, ok := ProjectOf(asynq.NewTask(TypeFilesWrite, body))
		if wok && len(want.Name) <= maxScanValue/6 && len(want.Namespace) <= maxScanValue/6 && (got != want || !ok) {
			t.Fatalf("ProjectOf(%q) = %+v, %v; encoding/json reads %+v", body, got, ok, want)
		}
		if ok && !wok {
			t.Fatalf("ProjectOf(%q) = %+v; encoding/json reads none", body, got)
		}
	})
}

func TestUncompressSizeHint(t *testing.T) {
	t.Parallel()
	body := bytes.Repeat([]byte(`{"a":"0123456789"}`), 5000)
	z := gzipped(t, body)
	// Two members: the trailer states only the last one's size.
	two := append(append([]byte{}, z...), gzipped(t, []byte(" "))...)
	// A lying trailer, too small and too large.
	small := append([]byte{}, z...)
	copy(small[len(small)-4:], []byte{1, 0, 0, 0})
	for name, c := range map[string]struct {
		payload []byte
		want    []byte
		fails   bool
	}{
		"exact":       {z, body, false},
		"two members": {two, append(append([]byte{}, body...), ' '), false},
		"small hint":  {small, nil, true}, // the gzip reader checks ISIZE
	} {
		got, err := Uncompress(c.payload, map[string]string{HeaderContentEncoding: EncodingGzip})
		if c.fails != (err != nil) || (!c.fails && !bytes.Equal(got, c.want)) {
			t.Errorf("%s: Uncompress = %d bytes, %v", name, len(got), err)
		}
	}
	for _, size := range []int{0, 1, len(body) - 1, len(body), len(body) + 1, 3 * len(body)} {
		got, err := readSized(bytes.NewReader(body), size)
		if err != nil || !bytes.Equal(got, body) {
			t.Errorf("readSized with hint %d: %d bytes, %v", size, len(got), err)
		}
	}
}

// BenchmarkProjectOf: the scan of a small plain payload and of a large
// compressed one.
func BenchmarkProjectOf(b *testing.B) {
	for _, size := range []int{100, 4 << 20} {
		task, err := New(FilesWrite{Project: Project{Name: "app"}, Files: []File{{Path: "a.txt", Content: strings.Repeat("text\n", size/5)}}})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("content=%d", size), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, ok := ProjectOf(task); !ok {
					b.Fatal("no project")
				}
			}
		})
		b.Run(fmt.Sprintf("content=%d/encoding-json", size), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				raw, err := Uncompress(task.Payload(), task.Headers())
				if _, ok := projectByJSON(raw); err != nil || !ok {
					b.Fatal("no project")
				}
			}
		})
	}
}
