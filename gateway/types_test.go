package gateway

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestSandboxNeverPrintsItsToken(t *testing.T) {
	t.Parallel()
	sb := &Sandbox{SandboxID: "sbx_1", URL: "http://127.0.0.1:1/s/sbx_1", Token: "tok_very_secret", Namespace: "ns", Name: "n"}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("m", "sandbox", sb)
	for _, out := range []string{fmt.Sprint(sb), fmt.Sprintf("%v %+v %#v %s", *sb, sb, sb, sb), fmt.Sprintf("%+v", []*Sandbox{sb}), buf.String()} {
		if strings.Contains(out, "tok_very_secret") {
			t.Errorf("token printed: %s", out)
		}
		if !strings.Contains(out, "sbx_1") {
			t.Errorf("sandbox id missing: %s", out)
		}
	}
}
