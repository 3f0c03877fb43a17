package tasks

import (
	"encoding/json"
	"reflect"
	"runtime"
	"strings"
	"testing"
)

// checkDecodeFiles: where decodeFiles accepts body, it decodes what
// encoding/json decodes.
func checkDecodeFiles(t *testing.T, body []byte) (accepted bool) {
	t.Helper()
	var want FilesWrite
	jerr := json.Unmarshal(body, &want)
	got, err := decodeFiles(append([]byte(nil), body...))
	if err != nil {
		return false
	}
	if jerr != nil {
		t.Fatalf("decodeFiles accepts %q, which encoding/json refuses: %v", body, jerr)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("decodeFiles(%q) = %+v, encoding/json decodes %+v", body, got, want)
	}
	return true
}

func TestDecodeFiles(t *testing.T) {
	t.Parallel()
	accepted := []string{
		`{"namespace":"acme","name":"shop","files":[{"path":"/a","content":"hi"},{"path":"b","delete":true}],"ensure":false}`,
		` { "name" : "x" , "files" : [ ] } `,
		`{"name":"x","files":[{"path":"a","content":"\"\\\/\b\f\n\r\t\u00e9\u20ac\ud83d\ude00\u0000 é€😀"}]}`,
		`{"name":"x","files":[{"path":"bin","content":"AAEC","encoding":"base64"}]}`,
		`{}`,
	}
	for _, s := range accepted {
		if !checkDecodeFiles(t, []byte(s)) {
			t.Errorf("decodeFiles refuses %s", s)
		}
	}
	refused := []string{
		`{"name":"x","name":"y"}`,                     // duplicate
		`{"Name":"x"}`,                                // not spelled exactly
		`{"name":"x","other":1}`,                      // unknown key
		`{"name":null}`,                               // null
		`{"files":[{"path":"a","content":"\ud83d"}]}`, // lone surrogate
		`{"files":[{"path":"a","content":"\ud83d\u0041"}]}`,
		"{\"files\":[{\"path\":\"a\",\"content\":\"\xff\"}]}", // invalid UTF-8
		"{\"files\":[{\"path\":\"a\",\"content\":\"\n\"}]}",   // raw control character
		`{"files":[{"path":"a","content":"\x"}]}`,
		`{"files":[{"path":"a","content":"\u12"}]}`,
		`{"files":[{"path":"a","content":"open`,
		`{"files":[{"path":"a"},]}`,
		`{"name":"x"} {}`,
		`{"n\u0061me":"x"}`,
		`{"ensure":1}`,
	}
	for _, s := range refused {
		if checkDecodeFiles(t, []byte(s)) {
			t.Errorf("decodeFiles accepts %s", s)
		}
	}
}

// FuzzDecodeFiles: decodeFiles never disagrees with encoding/json.
func FuzzDecodeFiles(f *testing.F) {
	f.Add([]byte(`{"namespace":"acme","name":"shop","files":[{"path":"/a","content":"h\u00e9\n\"i"},{"path":"b","delete":true}],"ensure":true}`))
	f.Add([]byte(`{"files":[{"path":"a","content":"\ud83d\ude00\ud800x\\"}]}`))
	f.Fuzz(func(t *testing.T, body []byte) { checkDecodeFiles(t, body) })
}

// TestDecodeLargeFilesWriteKeepsOneCopy: decoding a compressed files:write
// with 4 MiB of content allocates about the content once (encoding/json
// would allocate the JSON and then a copy of every string).
func TestDecodeLargeFilesWriteKeepsOneCopy(t *testing.T) {
	content := strings.Repeat("line of text with \"quotes\" and é\n", (4<<20)/36)
	task, err := New(FilesWrite{Project: Project{Name: "app"}, Files: []File{{Path: "big.txt", Content: content}}})
	if err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	p, err := Decode[FilesWrite](task)
	runtime.ReadMemStats(&after)
	if err != nil || p.Files[0].Content != content {
		t.Fatalf("Decode: %v (content intact: %v)", err, err == nil && p.Files[0].Content == content)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; float64(alloc) > 1.5*float64(len(content)) {
		t.Errorf("Decode allocated %d bytes for %d bytes of content, want at most 1.5×", alloc, len(content))
	}
	// The general path decodes the same payload identically.
	var want FilesWrite
	raw, err := Uncompress(task.Payload(), task.Headers())
	if err != nil || json.Unmarshal(raw, &want) != nil || !reflect.DeepEqual(p, normalize(want)) {
		t.Fatal("decodeFiles and encoding/json disagree on the payload New wrote")
	}
}
