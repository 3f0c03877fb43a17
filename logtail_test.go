package sandboxq

import (
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestLastLines(t *testing.T) {
	for _, c := range []struct {
		s    string
		n    int
		want string
	}{
		{"a\nb\nc\n", 2, "b\nc\n"},
		{"a\nb\nc", 2, "b\nc"},
		{"a\nb\n", 5, "a\nb\n"},
		{"a\n", 0, ""},
		{"\n\nx\n", 2, "\nx\n"},
		{"", 3, ""},
	} {
		if got := LastLines(c.s, c.n); got != c.want {
			t.Errorf("LastLines(%q, %d) = %q, want %q", c.s, c.n, got, c.want)
		}
	}
}

func TestLogTail(t *testing.T) {
	var b strings.Builder
	for i := range 80 {
		fmt.Fprintf(&b, "line %d token=s3cr3t-value\n", i)
	}
	got := LogTail(b.String(), map[string]string{"TOKEN": "s3cr3t-value", "SHORT": "ab"})
	if n := strings.Count(got, "\n"); n != LogTailLines {
		t.Errorf("%d lines, want %d", n, LogTailLines)
	}
	if !strings.HasPrefix(got, "line 30 ") || strings.Contains(got, "s3cr3t") || !strings.Contains(got, "token=[redacted]") {
		t.Errorf("tail %q", got[:60])
	}
	long := strings.Repeat("é", 3*LogTailBytes) // one long line
	got = LogTail("first\n"+long, nil)
	if len(got) > LogTailBytes || !utf8.ValidString(got) || strings.Contains(got, "first") {
		t.Errorf("long line: %d bytes, valid %v", len(got), utf8.ValidString(got))
	}
	lines := strings.Repeat(strings.Repeat("x", 1000)+"\n", 20)
	got = LogTail(lines, nil)
	if len(got) > LogTailBytes || !strings.HasPrefix(got, "x") || strings.Count(got, "\n") != 8 {
		t.Errorf("byte cap: %d bytes, %d lines", len(got), strings.Count(got, "\n"))
	}
}
