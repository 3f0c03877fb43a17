package worker

import (
	"strings"
	"testing"
)

// TestRecoverBuildTurnsPanicsIntoErrors covers components that panic on
// input they reject (asynqmon on a RootPath without a leading slash,
// http.ServeMux on a conflicting pattern): New returns an error instead.
func TestRecoverBuildTurnsPanicsIntoErrors(t *testing.T) {
	t.Parallel()
	err := recoverBuild(func() error { panic("asynqmon: RootPath must start with a slash") })
	if err == nil || !strings.Contains(err.Error(), "RootPath must start with a slash") {
		t.Fatalf("err = %v", err)
	}
	if err := recoverBuild(func() error { return nil }); err != nil {
		t.Fatal(err)
	}
}
