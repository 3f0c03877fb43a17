package api

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"testing"

	"github.com/sandboxq/sandboxq/tasks"
)

// TestEnqueueBinaryFile: a files:write body may carry base64 content; it
// is enqueued as is and decodes to the bytes sent. Bad base64 or an unknown
// encoding is a 400 naming the field.
func TestEnqueueBinaryFile(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	data := make([]byte, 4096)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	body := map[string]any{"name": "shop", "files": []map[string]any{
		{"path": "/public/logo.png", "content": base64.StdEncoding.EncodeToString(data), "encoding": "base64"},
	}}
	var got enqueued
	b.expect(t, request{method: "POST", path: "/tasks/files:write", body: body}, http.StatusAccepted, &got)
	info, err := b.insp.GetTaskInfo(got.Queue, got.ID)
	if err != nil {
		t.Fatal(err)
	}
	p, err := tasks.DecodePayload(info.Type, info.Payload, info.Headers)
	if err != nil {
		t.Fatal(err)
	}
	f := p.(tasks.FilesWrite).Files[0]
	if raw, err := f.Bytes(); err != nil || !bytes.Equal(raw, data) || !f.IsBinary() {
		t.Fatalf("enqueued file decodes to %d bytes (err %v, binary %v), want the %d sent", len(raw), err, f.IsBinary(), len(data))
	}

	b.expectError(t, request{method: "POST", path: "/tasks/files:write",
		body: `{"name":"shop","files":[{"path":"a.txt","content":"x"},{"path":"/logo.png","content":"iVBOR*w0K","encoding":"base64"}]}`},
		http.StatusBadRequest, "files[1].content")
	b.expectError(t, request{method: "POST", path: "/tasks/files:write",
		body: `{"name":"shop","files":[{"path":"/logo.png","content":"00ff","encoding":"hex"}]}`},
		http.StatusBadRequest, "files[0].encoding")
	b.expectError(t, request{method: "POST", path: "/tasks/workflow:run",
		body: `{"name":"shop","steps":[{"type":"files:write","payload":{"files":[{"path":"/x.bin","content":"@@","encoding":"base64"}]}}]}`},
		http.StatusBadRequest, "steps[0].payload.files[0].content")
}
