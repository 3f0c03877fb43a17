package main

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/sethvargo/go-envconfig"
)

// readmeConfigTable returns the rows of the README's configuration table:
// each variable named in a row's first column → the row's default column
// without backticks.
func readmeConfigTable(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "\n## Configuration\n")
	if !ok {
		t.Fatal("README has no ## Configuration section")
	}
	section, _, _ := strings.Cut(rest, "\n## ")
	names := regexp.MustCompile("`([A-Z][A-Z0-9_]+)`")
	rows := map[string]string{}
	for _, line := range strings.Split(section, "\n") {
		cols := strings.Split(line, " | ")
		if !strings.HasPrefix(line, "| `") || len(cols) < 3 {
			continue
		}
		def := strings.TrimSpace(strings.ReplaceAll(cols[1], "`", ""))
		for _, m := range names.FindAllStringSubmatch(cols[0], -1) {
			rows[m[1]] = def
		}
	}
	if len(rows) < 20 {
		t.Fatalf("found only %d variables in the README's configuration table", len(rows))
	}
	return rows
}

func TestHelpListsEveryVariableAsTheREADME(t *testing.T) {
	t.Parallel()
	var stderr bytes.Buffer
	_, err := parseFlags([]string{"-h"}, &stderr)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v", err)
	}
	help := stderr.String()
	readme := readmeConfigTable(t)
	vars := envVars()
	if len(vars) < 30 {
		t.Fatalf("envVars found %d variables; Config has more", len(vars))
	}
	for _, v := range vars {
		if !regexp.MustCompile(`(?m)^  ` + v.Name + ` +` + regexp.QuoteMeta(orUnset(v.Default)) + `$`).MatchString(help) {
			t.Errorf("worker -h does not list %s with default %q:\n%s", v.Name, v.Default, help)
		}
		def, ok := readme[v.Name]
		if !ok {
			t.Errorf("README's configuration table has no row for %s", v.Name)
			continue
		}
		if v.Default != "" && !strings.Contains(def, v.Default) {
			t.Errorf("README says the default of %s is %q; Config says %q", v.Name, def, v.Default)
		}
	}
	for name := range readme {
		if strings.HasPrefix(name, "OTEL_") {
			continue
		}
		if !strings.Contains(help, "  "+name+" ") {
			t.Errorf("README documents %s, which cmd/worker does not read", name)
		}
	}
}

func orUnset(s string) string {
	if s == "" {
		return "(unset)"
	}
	return s
}

func TestDashboardIsWritableOnlyInDevByDefault(t *testing.T) {
	t.Parallel()
	load := func(env map[string]string, dev bool) bool {
		t.Helper()
		env["COMPUTESDK_API_KEY"] = "key"
		cfg, err := loadConfig(t.Context(), envconfig.MapLookuper(env), dev)
		if err != nil {
			t.Fatal(err)
		}
		return *dashboardReadOnly(cfg.DashboardReadOnly, dev)
	}
	for _, tc := range []struct {
		env      map[string]string
		dev      bool
		readOnly bool
	}{
		{map[string]string{}, false, true},
		{map[string]string{}, true, false},
		{map[string]string{"DASHBOARD_READONLY": "true"}, true, true},
		{map[string]string{"DASHBOARD_READONLY": "false"}, false, false},
	} {
		if got := load(tc.env, tc.dev); got != tc.readOnly {
			t.Errorf("env %v, dev %v: read-only %v, want %v", tc.env, tc.dev, got, tc.readOnly)
		}
	}
}
