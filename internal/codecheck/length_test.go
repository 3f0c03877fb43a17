package codecheck

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

// maxFuncLines is the longest a function may be, in source lines.
const maxFuncLines = 80

// longFunc is one function over the limit.
type longFunc struct {
	pos   string
	name  string
	lines int
}

// skipDir reports whether the walk leaves out the directory at rel (a
// slash-separated path from the module root).
func skipDir(rel, name string) bool {
	if rel == "gateway/local" {
		return true
	}
	switch name {
	case "node_modules", "testdata", "vendor":
		return true
	}
	return rel != "." && strings.HasPrefix(name, ".")
}

// funcName names a declaration as gocyclo does: "(*T).M" or "F".
func funcName(fn *ast.FuncDecl) string {
	if fn.Recv == nil || len(fn.Recv.List) == 0 {
		return fn.Name.Name
	}
	var b strings.Builder
	t := fn.Recv.List[0].Type
	if star, ok := t.(*ast.StarExpr); ok {
		b.WriteString("*")
		t = star.X
	}
	if idx, ok := t.(*ast.IndexExpr); ok {
		t = idx.X
	}
	if idx, ok := t.(*ast.IndexListExpr); ok {
		t = idx.X
	}
	if id, ok := t.(*ast.Ident); ok {
		b.WriteString(id.Name)
	}
	return "(" + b.String() + ")." + fn.Name.Name
}

// longFuncs lists the functions over limit lines in the non-test Go files
// below root.
func longFuncs(root string, limit int) ([]longFunc, error) {
	var out []longFunc
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if skipDir(rel, d.Name()) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			start, end := fset.Position(fn.Pos()), fset.Position(fn.End())
			if n := end.Line - start.Line + 1; n > limit {
				out = append(out, longFunc{
					pos:   fmt.Sprintf("%s:%d", rel, start.Line),
					name:  funcName(fn),
					lines: n,
				})
			}
		}
		return nil
	})
	return out, err
}

// TestFunctionLength holds every non-test function of the module outside
// gateway/local to maxFuncLines lines.
func TestFunctionLength(t *testing.T) {
	long, err := longFuncs("../..", maxFuncLines)
	if err != nil {
		t.Fatalf("reading the module source: %v", err)
	}
	for _, f := range long {
		t.Errorf("%s: %s is %d lines (limit %d): split it", f.pos, f.name, f.lines, maxFuncLines)
	}
}

// TestLongFuncsFindsALongFunction keeps the check honest: a generated file
// with one function over the limit and one at it must yield exactly the
// first.
func TestLongFuncsFindsALongFunction(t *testing.T) {
	dir := t.TempDir()
	body := func(name string, n int) string {
		// func line + n-2 body lines + closing brace = n lines.
		return "func " + name + "() {\n" + strings.Repeat("\t_ = 0\n", n-2) + "}\n"
	}
	src := "package p\n\n" + body("tooLong", 81) + "\n" + body("atLimit", 80) + "\n"
	writeFile(t, filepath.Join(dir, "p.go"), src)
	writeFile(t, filepath.Join(dir, "p_test.go"), "package p\n\n"+body("testLong", 200))
	writeFile(t, filepath.Join(dir, "gateway", "local", "l.go"), "package local\n\n"+body("emulator", 200))

	long, err := longFuncs(dir, maxFuncLines)
	if err != nil {
		t.Fatal(err)
	}
	if len(long) != 1 || long[0].name != "tooLong" || long[0].lines != 81 || long[0].pos != "p.go:3" {
		t.Fatalf("longFuncs = %+v, want only tooLong (81 lines) at p.go:3", long)
	}
}
