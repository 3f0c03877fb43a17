package tasks

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"reflect"
	"testing"
)

// FuzzDecodePayload: no payload bytes make DecodePayload panic, and what it
// accepts survives New and Decode again unchanged.
func FuzzDecodePayload(f *testing.F) {
	seeds := []struct {
		typ  uint8
		body string
	}{
		{0, `{"name":"shop"}`},
		{2, `{"name":"shop","files":[{"path":"/app/a.txt","content":"hi"},{"path":"b","delete":true}]}`},
		{3, `{"namespace":"acme","name":"shop","slug":"web","command":"npm run dev","env":{"A":"1"},"health_check":{"path":"/h"}}`},
		{6, `{"name":"shop","command":"ls","timeout_ms":5}`},
		{8, `{"name":"shop","steps":[{"type":"files:write","payload":{"files":[{"path":"a","content":"x"}]}}]}`},
		{2, `{"name":"shop","files":[{"path":"../../etc/passwd","content":"x"}]}`},
		{1, `not json`}, {5, `{"name":"x","slug":""}`},
	}
	for _, s := range seeds {
		f.Add(s.typ, []byte(s.body), false)
	}
	types := Types()
	f.Fuzz(func(t *testing.T, typ uint8, body []byte, compress bool) {
		name := types[int(typ)%len(types)]
		var headers map[string]string
		if compress {
			var buf bytes.Buffer
			zw := gzip.NewWriter(&buf)
			_, _ = zw.Write(body)
			_ = zw.Close()
			body = buf.Bytes()
		}
		p, err := DecodePayload(name, body, headers)
		if err != nil {
			return
		}
		if p.TypeName() != name {
			t.Fatalf("decoded a %s payload as %s", name, p.TypeName())
		}
		task, err := New(p)
		if err != nil {
			t.Fatalf("New of an accepted %s payload: %v", name, err)
		}
		again, err := DecodePayload(task.Type(), task.Payload(), task.Headers())
		if err != nil {
			t.Fatalf("re-decode of %s: %v", task.Payload(), err)
		}
		a, _ := json.Marshal(p)
		b, _ := json.Marshal(again)
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("round trip changed the payload:\n%s\n%s", a, b)
		}
	})
}
