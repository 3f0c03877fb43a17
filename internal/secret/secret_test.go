package secret

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestSecretNeverPrints(t *testing.T) {
	t.Parallel()
	const raw = "computesdk_live_abcdef"
	s := New(raw)
	type wrapper struct {
		Key Secret `json:"key"`
	}
	type hidden struct {
		key Secret
	}
	var logBuf bytes.Buffer
	slog.New(slog.NewJSONHandler(&logBuf, nil)).Info("msg", "key", s, "w", wrapper{s})
	js, err := json.Marshal(wrapper{s})
	if err != nil {
		t.Fatal(err)
	}
	outs := []string{
		fmt.Sprint(s), fmt.Sprintf("%v %s %q %x %+v %#v %d", s, s, s, s, s, s, s),
		fmt.Sprintf("%+v", wrapper{s}), fmt.Sprintf("%#v", wrapper{s}),
		fmt.Sprintf("%+v", hidden{s}), fmt.Sprintf("%#v", &hidden{s}), fmt.Sprintf("%v", []any{hidden{s}}),
		s.String(), logBuf.String(), string(js),
	}
	for _, o := range outs {
		if strings.Contains(o, raw) || strings.Contains(o, fmt.Sprintf("%x", raw)) {
			t.Errorf("secret leaked: %q", o)
		}
	}
	if s.Reveal() != raw {
		t.Fatalf("Reveal = %q", s.Reveal())
	}
	var back Secret
	if err := back.UnmarshalText([]byte(raw)); err != nil || back.Reveal() != raw {
		t.Fatalf("UnmarshalText: %v %q", err, back.Reveal())
	}
	if !(Secret{}).IsZero() || s.IsZero() {
		t.Fatal("IsZero wrong")
	}
}
