// Package docstest reads the examples out of the user documentation, so
// tests can run what docs/ shows, as written.
package docstest

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

var fenced = regexp.MustCompile("(?s)^```[a-z]*\n(.*?)\n```")

// Block returns the fenced code block that directly follows the line
// <!-- marker --> in the Markdown file at path, failing t if there is none.
func Block(t testing.TB, path, marker string) string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(raw), "<!-- "+marker+" -->\n")
	if !ok {
		t.Fatalf("%s has no %q block", path, marker)
	}
	m := fenced.FindStringSubmatch(rest)
	if m == nil {
		t.Fatalf("%s: no fenced block after %q", path, marker)
	}
	return m[1]
}
