package request

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestSecurityDocNamesRealTests keeps docs/security.md honest: every row of
// its attack table names at least one test, and every test it names exists
// in the file it names.
func TestSecurityDocNamesRealTests(t *testing.T) {
	doc, err := os.ReadFile("../../docs/security.md")
	if err != nil {
		t.Fatal(err)
	}
	section := string(doc)
	start := strings.Index(section, "## Attacks and the tests that prove each defence")
	end := strings.Index(section, "## The request normaliser")
	if start < 0 || end < start {
		t.Fatal("docs/security.md lost its attack table")
	}
	cell := regexp.MustCompile("`([a-z0-9_/.]+_test\\.go)`: ((?:`[A-Za-z0-9_/*]+`(?:, )?)+)")
	name := regexp.MustCompile("`([A-Za-z0-9_]+)[/`]")
	rows := 0
	for line := range strings.SplitSeq(section[start:end], "\n") {
		if !strings.HasPrefix(line, "| **") {
			continue
		}
		rows++
		refs := cell.FindAllStringSubmatch(line, -1)
		if len(refs) == 0 {
			t.Errorf("row names no test: %.80s…", line)
		}
		for _, ref := range refs {
			src, err := os.ReadFile("../../" + ref[1])
			if err != nil {
				t.Errorf("%s: %v", ref[1], err)
				continue
			}
			for _, n := range name.FindAllStringSubmatch(ref[2], -1) {
				if !strings.Contains(string(src), "func "+n[1]+"(") {
					t.Errorf("%s has no %s", ref[1], n[1])
				}
			}
		}
	}
	if rows < 20 {
		t.Errorf("only %d attack rows found", rows)
	}
}
