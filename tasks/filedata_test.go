package tasks_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/sandboxq/sandboxq/internal/testutil"
	"github.com/sandboxq/sandboxq/tasks"
)

// TestBinaryFileRoundTrip: the bytes of a BinaryFile survive New and
// Decode (compressed, since 256 KiB is above the threshold) unchanged.
func TestBinaryFileRoundTrip(t *testing.T) {
	t.Parallel()
	data := testutil.RandomBytes(t, 256<<10)
	f := tasks.BinaryFile("/app/logo.png", data)
	if !f.IsBinary() || f.Size() != len(data) {
		t.Fatalf("IsBinary %v, Size %d; want true, %d", f.IsBinary(), f.Size(), len(data))
	}
	task, err := tasks.New(tasks.FilesWrite{Project: app, Files: []tasks.File{f, {Path: "/app/a.txt", Content: "text"}}})
	if err != nil {
		t.Fatal(err)
	}
	p, err := tasks.Decode[tasks.FilesWrite](asynq.NewTaskWithHeaders(task.Type(), task.Payload(), task.Headers()))
	if err != nil {
		t.Fatal(err)
	}
	got, err := p.Files[0].Bytes()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("decoded %d bytes (err %v), want the %d sent", len(got), err, len(data))
	}
	if txt, _ := p.Files[1].Bytes(); string(txt) != "text" || p.Files[1].IsBinary() {
		t.Errorf("text file came back as %q (binary %v)", txt, p.Files[1].IsBinary())
	}
}

func TestBinaryFileValidation(t *testing.T) {
	t.Parallel()
	b64 := base64.StdEncoding.EncodeToString
	tests := []struct {
		name    string
		file    tasks.File
		field   string // "" = valid
		message string
	}{
		{"binary", tasks.BinaryFile("a.png", []byte{0x89, 'P', 'N', 'G', 0, 0xff}), "", ""},
		{"explicit utf-8", tasks.File{Path: "a.txt", Content: "hé", Encoding: tasks.EncodingUTF8}, "", ""},
		{"line-wrapped base64", tasks.File{Path: "a", Content: b64(make([]byte, 100))[:76] + "\n" + b64(make([]byte, 100))[76:], Encoding: "base64"}, "", ""},
		{"bad base64", tasks.File{Path: "a.png", Content: "not base64!", Encoding: "base64"}, "files[0].content", "not valid base64"},
		{"truncated base64", tasks.File{Path: "a.png", Content: b64([]byte("abcd"))[:5], Encoding: "base64"}, "files[0].content", "not valid base64"},
		{"unknown encoding", tasks.File{Path: "a", Content: "00ff", Encoding: "hex"}, "files[0].encoding", `"hex"`},
		{"binary as text", tasks.File{Path: "a.png", Content: "\xff\xfe"}, "files[0].content", `encoding": "base64"`},
		{"at the limit", tasks.BinaryFile("big", make([]byte, tasks.MaxFileBytes)), "", ""},
		{"above the limit", tasks.BinaryFile("big", make([]byte, tasks.MaxFileBytes+1)), "files[0].content", "decodes to 10485761 bytes"},
		{"far above the limit", tasks.File{Path: "big", Content: strings.Repeat("A", 3*tasks.MaxFileBytes), Encoding: "base64"}, "files[0].content", "decodes to more than"},
	}
	for _, tt := range tests {
		err := tasks.FilesWrite{Project: app, Files: []tasks.File{tt.file}}.Validate()
		var ve *tasks.ValidationError
		switch {
		case tt.field == "" && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case tt.field == "":
		case !errors.As(err, &ve) || ve.Field != tt.field || !strings.Contains(ve.Message, tt.message):
			t.Errorf("%s: error %v; want field %s with %q", tt.name, err, tt.field, tt.message)
		}
	}
}

// TestWriteFilesCountsDecodedBytes: the per-task limit counts decoded
// bytes, so three 1.2 MiB binary files (4.8 MiB as base64) fit one task
// and two 2.5 MiB ones do not.
func TestWriteFilesCountsDecodedBytes(t *testing.T) {
	t.Parallel()
	const part = 12 << 20 / 10
	b := setup(t)
	var three, two []tasks.File
	for _, n := range []string{"a", "b", "c"} {
		three = append(three, tasks.BinaryFile(n+".bin", make([]byte, part)))
	}
	for _, n := range []string{"a", "b"} {
		two = append(two, tasks.BinaryFile(n+".bin", make([]byte, 5<<20/2)))
	}
	for _, tt := range []struct {
		files []tasks.File
		tasks int
	}{{three, 1}, {two, 2}} {
		enq, err := b.client.WriteFiles(t.Context(), tasks.FilesWrite{Project: app, Files: tt.files})
		if err != nil {
			t.Fatal(err)
		}
		if len(enq) != tt.tasks {
			t.Errorf("%d files of %d bytes: %d tasks, want %d", len(tt.files), tt.files[0].Size(), len(enq), tt.tasks)
		}
	}
}
