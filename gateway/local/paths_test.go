package local

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// pathFixture is a sandbox root with links of every kind, and a directory
// outside it.
func pathFixture(tb testing.TB) (root, outside string) {
	tb.Helper()
	base, err := filepath.EvalSymlinks(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	root = filepath.Join(base, "root")
	outside = filepath.Join(base, "outside")
	for _, d := range []string{root, outside, filepath.Join(root, "sub", "deeper")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "sub", "f.txt"), []byte("f"), 0o644); err != nil {
		tb.Fatal(err)
	}
	links := map[string]string{
		"out":      outside,
		"outrel":   "../outside",
		"up":       "..",
		"dangle":   filepath.Join(outside, "nope"),
		"inner":    "sub",
		"innerabs": filepath.Join(root, "sub"),
		"loop1":    "loop2",
		"loop2":    "loop1",
		"chain":    "inner/deeper/..",
		"self":     ".",
		"sub/back": "../out",
		"sub/ok":   "../inner/f.txt",
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			tb.Fatal(err)
		}
	}
	return root, outside
}

func TestResolvePath(t *testing.T) {
	t.Parallel()
	root, _ := pathFixture(t)
	ok := []struct{ in, want string }{
		{"", root},
		{"/", root},
		{".", root},
		{"/tmp/a.txt", root + "/tmp/a.txt"},
		{"tmp/a.txt", root + "/tmp/a.txt"},
		{"//tmp//./a.txt/", root + "/tmp/a.txt"},
		{"/a/../b", root + "/b"},
		{"sub/deeper/../f.txt", root + "/sub/f.txt"},
		{"/inner/f.txt", root + "/sub/f.txt"},
		{"/innerabs/new/x", root + "/sub/new/x"},
		{"/chain/f.txt", root + "/sub/f.txt"},
		{"/self/self/sub", root + "/sub"},
		{"/sub/ok", root + "/sub/f.txt"},
		{"/sub/f.txt/x", root + "/sub/f.txt/x"}, // not a directory: the operation will say so
		{"/name with spaces/ü", root + "/name with spaces/ü"},
		{"/" + strings.Repeat("abcdefg/", 511), root + "/" + strings.TrimSuffix(strings.Repeat("abcdefg/", 511), "/")},
	}
	for _, c := range ok {
		got, err := resolvePath(root, c.in)
		if err != nil || got != c.want {
			t.Errorf("resolvePath(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	bad := []struct{ in, reason string }{
		{"..", `".." escapes`},
		{"../x", `".." escapes`},
		{"/a/../../x", `".." escapes`},
		{"a\x00b", "NUL"},
		{"/" + strings.Repeat("a", 4096), "longer than 4096"},
		{"/out", "symbolic link"},
		{"/out/secret", "symbolic link"},
		{"/outrel/x", "symbolic link"},
		{"/up", "symbolic link"},
		{"/up/root/sub", "symbolic link"}, // leaves and comes back: judged by where it ends
		{"/dangle", "symbolic link"},
		{"/sub/back/x", "symbolic link"},
		{"/loop1", "too many levels"},
		{"/" + strings.Repeat("n", 300), "cannot inspect"},
	}
	for _, c := range bad {
		got, err := resolvePath(root, c.in)
		var pe *pathError
		if !errors.As(err, &pe) {
			t.Errorf("resolvePath(%q) = %q, %v; want a path error", c.in, got, err)
			continue
		}
		if !strings.Contains(err.Error(), c.reason) {
			t.Errorf("resolvePath(%q): %v; want it to mention %q", c.in, err, c.reason)
		}
	}
}

func TestResolvePathThroughLinkedRoot(t *testing.T) {
	t.Parallel()
	root, _ := pathFixture(t)
	link := filepath.Join(filepath.Dir(root), "rootlink")
	if err := os.Symlink(root, link); err != nil {
		t.Fatal(err)
	}
	got, err := resolvePath(link, "/sub/f.txt")
	if err != nil || got != filepath.Join(root, "sub", "f.txt") {
		t.Fatalf("got %q, %v", got, err)
	}
}

// FuzzResolvePath checks that resolvePath never panics and that whatever
// it accepts lies inside the root, also after the kernel resolves it.
func FuzzResolvePath(f *testing.F) {
	root, _ := pathFixture(f)
	for _, s := range []string{
		"", "/", "..", "../../etc/passwd", "/tmp/a.txt", "tmp//a/../b", "/out/x", "/up/root",
		"/inner/../out", "/chain/../../x", "/dangle", "/loop1/x", "/sub/back", "/./.././", "a\x00b",
		"/innerabs/deeper/../../out", "%2e%2e/x", "\\..\\x", "/sub/ok/..",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		got, err := resolvePath(root, p)
		if err != nil {
			var pe *pathError
			if !errors.As(err, &pe) {
				t.Fatalf("resolvePath(%q): non-path error %v", p, err)
			}
			return
		}
		if !within(root, got) || filepath.Clean(got) != got {
			t.Fatalf("resolvePath(%q) = %q, outside root %q or unclean", p, got, root)
		}
		// The kernel agrees for the part that exists.
		existing := got
		for {
			if _, err := os.Lstat(existing); err == nil {
				break
			}
			existing = filepath.Dir(existing)
		}
		real, err := filepath.EvalSymlinks(existing)
		if err != nil {
			t.Fatalf("EvalSymlinks(%q): %v", existing, err)
		}
		if !within(root, real) {
			t.Fatalf("resolvePath(%q) = %q, which the kernel resolves to %q outside the root", p, got, real)
		}
	})
}
