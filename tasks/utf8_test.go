package tasks_test

import (
	"errors"
	"testing"

	"github.com/sandboxq/sandboxq/tasks"
)

// TestDecodePayloadRejectsInvalidUTF8: a payload whose JSON holds invalid
// UTF-8 is refused naming the field, instead of being folded to U+FFFD.
func TestDecodePayloadRejectsInvalidUTF8(t *testing.T) {
	for _, c := range []struct{ typ, raw, field string }{
		{tasks.TypeSandboxEnsure, "{\"name\":\"a\xffb\"}", "name"},
		{tasks.TypeSandboxEnsure, "{\"name\":\"ab\",\"metadata\":{\"k\":[1,\"\xc3\"]}}", "metadata.k[1]"},
		{tasks.TypeSandboxEnsure, "{\"name\":\"ab\",\"metadata\":{\"\xff\":1}}", "metadata"},
		{tasks.TypeFilesWrite, "{\"name\":\"ab\",\"files\":[{\"path\":\"x\",\"content\":\"\"},{\"content\":\"\",\"path\":\"\xfe\"}]}", "files[1].path"},
	} {
		_, err := tasks.DecodePayload(c.typ, []byte(c.raw), nil)
		var ve *tasks.ValidationError
		if !errors.As(err, &ve) || ve.Field != c.field {
			t.Errorf("DecodePayload(%q) = %v; want a validation error on %s", c.raw, err, c.field)
		}
	}
	if _, err := tasks.DecodePayload(tasks.TypeSandboxEnsure, []byte(`{"name":"héllo"}`), nil); err != nil {
		t.Errorf("valid UTF-8 refused: %v", err)
	}
}

// TestGoProducerRejectsInvalidUTF8AndLongTimeout: the Go producer's
// Validate refuses what the API refuses.
func TestGoProducerRejectsInvalidUTF8AndLongTimeout(t *testing.T) {
	for _, c := range []struct {
		p     tasks.Payload
		field string
	}{
		{tasks.SandboxEnsure{Project: tasks.Project{Name: "a\xffb"}}, "name"},
		{tasks.SandboxEnsure{Project: tasks.Project{Namespace: "n\xff", Name: "ab"}}, "namespace"},
		{tasks.FilesWrite{Project: tasks.Project{Name: "ab"}, Files: []tasks.File{{Path: "x\xff"}}}, "files[0].path"},
		{tasks.SandboxEnsure{Project: tasks.Project{Name: "ab"}, TimeoutMS: 24*3600*1000 + 1}, "timeout_ms"},
	} {
		var ve *tasks.ValidationError
		if err := c.p.Validate(); !errors.As(err, &ve) || ve.Field != c.field {
			t.Errorf("%+v: Validate() = %v; want a validation error on %s", c.p, err, c.field)
		}
	}
}
