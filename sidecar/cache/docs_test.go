package cache

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// docSection returns the text of docs/caching.md from the heading start to
// the next heading of the same or a higher level.
func docSection(t *testing.T, start string) string {
	t.Helper()
	doc, err := os.ReadFile("../../docs/caching.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(doc)
	i := strings.Index(s, "\n"+start+"\n")
	if i < 0 {
		t.Fatalf("docs/caching.md lost its %q section", start)
	}
	level := strings.Index(start, " ")
	rest := s[i+len(start)+2:]
	for _, h := range []string{"\n# ", "\n## ", "\n### "}[:level] {
		if j := strings.Index(rest, h); j >= 0 {
			rest = rest[:j]
		}
	}
	return rest
}

// typedConstants returns the values of the string constants of the named
// type declared in the package's non-test files.
func typedConstants(t *testing.T, typ string) []string {
	t.Helper()
	fset := token.NewFileSet()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.ValueSpec:
				if id, ok := n.Type.(*ast.Ident); ok && id.Name == typ {
					for _, v := range n.Values {
						if lit, ok := v.(*ast.BasicLit); ok {
							s, _ := strconv.Unquote(lit.Value)
							out = append(out, s)
						}
					}
				}
			case *ast.CallExpr:
				// detail("x") outside the constant block would escape the list.
				if id, ok := n.Fun.(*ast.Ident); ok && id.Name == typ && len(n.Args) == 1 {
					if lit, ok := n.Args[0].(*ast.BasicLit); ok && lit.Kind == token.STRING {
						t.Errorf("%s: %s(%s) outside the constants docs/caching.md lists", fset.Position(n.Pos()), typ, lit.Value)
					}
				}
			}
			return true
		})
	}
	slices.Sort(out)
	return out
}

// TestCacheStatusDocListsEveryValue keeps docs/caching.md's Cache-Status
// table true: every detail and fwd value the code can emit is listed there
// with its meaning, and the table lists none the code does not have.
func TestCacheStatusDocListsEveryValue(t *testing.T) {
	section := docSection(t, "### Cache-Status parameters")
	for _, param := range []struct{ name, typ string }{{"detail", "detail"}, {"fwd", "fwd"}} {
		var documented []string
		for _, m := range regexp.MustCompile("`"+param.name+`=([a-z-]+)`+"`").FindAllStringSubmatch(section, -1) {
			documented = append(documented, m[1])
		}
		slices.Sort(documented)
		documented = slices.Compact(documented)
		code := typedConstants(t, param.typ)
		if len(code) < 3 {
			t.Fatalf("found only %d %s constants", len(code), param.typ)
		}
		for _, v := range code {
			if !slices.Contains(documented, v) {
				t.Errorf("the code emits %s=%s, which docs/caching.md does not list", param.name, v)
			}
		}
		for _, v := range documented {
			if !slices.Contains(code, v) {
				t.Errorf("docs/caching.md lists %s=%s, which the code never emits", param.name, v)
			}
		}
	}
	for _, p := range []string{"`hit`", "`ttl=N`", "`stored`", "`collapsed`", "`fwd-status=N`"} {
		if !strings.Contains(section, p) {
			t.Errorf("the Cache-Status table does not list %s", p)
		}
	}
}

// TestConformanceTableNamesRealTests keeps the conformance table honest:
// every row names a test or says why the requirement does not apply, and
// every test it names exists in this package.
func TestConformanceTableNamesRealTests(t *testing.T) {
	section := docSection(t, "## Conformance")
	var src strings.Builder
	files, _ := filepath.Glob("*_test.go")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		src.Write(b)
	}
	name := regexp.MustCompile("`(Test[A-Za-z0-9_]+)`")
	rows := 0
	for line := range strings.SplitSeq(section, "\n") {
		if !strings.HasPrefix(line, "| 9111") && !strings.HasPrefix(line, "| 5861") && !strings.HasPrefix(line, "| 9213") {
			continue
		}
		rows++
		cells := strings.Split(line, "|")
		last := cells[len(cells)-2]
		tests := name.FindAllStringSubmatch(last, -1)
		if len(tests) == 0 && len(strings.TrimSpace(last)) < 12 {
			t.Errorf("row names no test and no reason: %s", line)
		}
		for _, m := range tests {
			if !strings.Contains(src.String(), "func "+m[1]+"(") {
				t.Errorf("the conformance table names %s, which does not exist", m[1])
			}
		}
	}
	for _, m := range name.FindAllStringSubmatch(section, -1) {
		if !strings.Contains(src.String(), "func "+m[1]+"(") {
			t.Errorf("the conformance section names %s, which does not exist", m[1])
		}
	}
	if rows < 60 {
		t.Errorf("only %d conformance rows", rows)
	}
}
