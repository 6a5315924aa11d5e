package docs

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// block is one fenced block of a page that a docs-test marker names.
type block struct {
	file string
	line int    // line of the marker, 1-based
	kind string // config, run, session-key-formula, ...
	name string
	args map[string]string
	lang string // the fence's info string
	body string
}

func (b block) where() string { return fmt.Sprintf("%s:%d", b.file, b.line) }

var marker = regexp.MustCompile(`^<!-- docs-test: ([a-z-]+)((?: [^ ]+)*) -->$`)

// blocks returns the marked blocks of a Markdown page, in page order. A
// marker must be followed by a fence on the next line.
func blocks(t *testing.T, path string) []block {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(raw), "\n")
	var out []block
	for i := 0; i < len(lines); i++ {
		m := marker.FindStringSubmatch(strings.TrimSpace(lines[i]))
		if m == nil {
			if strings.Contains(lines[i], "docs-test:") {
				t.Errorf("%s:%d: malformed docs-test marker %q", path, i+1, lines[i])
			}
			continue
		}
		b := block{file: path, line: i + 1, kind: m[1], args: map[string]string{}}
		for j, f := range strings.Fields(m[2]) {
			k, v, ok := strings.Cut(f, "=")
			switch {
			case ok:
				b.args[k] = v
			case j == 0:
				b.name = f
			default:
				t.Errorf("%s: unexpected marker word %q", b.where(), f)
			}
		}
		if i+1 >= len(lines) || !strings.HasPrefix(lines[i+1], "```") {
			t.Errorf("%s: marker not followed by a fenced block", b.where())
			continue
		}
		b.lang = strings.TrimPrefix(lines[i+1], "```")
		end := i + 2
		for end < len(lines) && !strings.HasPrefix(lines[end], "```") {
			end++
		}
		if end == len(lines) {
			t.Errorf("%s: unterminated block", b.where())
			break
		}
		b.body = strings.Join(lines[i+2:end], "\n") + "\n"
		out = append(out, b)
		i = end
	}
	return out
}

// step is one command of a run block and the output the page shows for it.
type step struct {
	where   string
	command string
	want    []string
}

// steps splits a console block into commands and their shown output.
func steps(b block) []step {
	var out []step
	lines := strings.Split(strings.TrimSuffix(b.body, "\n"), "\n")
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if !strings.HasPrefix(l, "$ ") {
			if len(out) == 0 {
				out = append(out, step{where: b.where()})
			}
			out[len(out)-1].want = append(out[len(out)-1].want, l)
			continue
		}
		s := step{where: fmt.Sprintf("%s:%d", b.file, b.line+2+i), command: strings.TrimPrefix(l, "$ ")}
		for strings.HasSuffix(s.command, `\`) && i+1 < len(lines) {
			i++
			s.command += "\n" + lines[i]
		}
		out = append(out, s)
	}
	return out
}

// matchLines reports whether got (what a command printed) is what the page
// shows: line by line, "…" in a line matching any text, a line of only "…"
// any number of lines. Trailing whitespace is ignored on both sides.
func matchLines(want, got []string) bool {
	want, got = trimLines(want), trimLines(got)
	// memo[i][j]: want[i:] matches got[j:]; computed right to left.
	memo := make([][]bool, len(want)+1)
	for i := range memo {
		memo[i] = make([]bool, len(got)+1)
	}
	memo[len(want)][len(got)] = true
	for i, w := range slices.Backward(want) {
		for j := len(got); j >= 0; j-- {
			if w == "…" {
				memo[i][j] = memo[i+1][j] || (j < len(got) && memo[i][j+1])
				continue
			}
			memo[i][j] = j < len(got) && matchLine(w, got[j]) && memo[i+1][j+1]
		}
	}
	return memo[0][0]
}

func trimLines(ls []string) []string {
	out := make([]string, 0, len(ls))
	for _, l := range ls {
		out = append(out, strings.TrimRight(l, " \t\r"))
	}
	for len(out) > 0 && out[len(out)-1] == "" {
		out = out[:len(out)-1]
	}
	return out
}

// matchLine matches one line, "…" standing for any text.
func matchLine(want, got string) bool {
	parts := strings.Split(want, "…")
	if len(parts) == 1 {
		return want == got
	}
	if !strings.HasPrefix(got, parts[0]) {
		return false
	}
	got = got[len(parts[0]):]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(got, p)
		if i < 0 {
			return false
		}
		got = got[i+len(p):]
	}
	return strings.HasSuffix(got, parts[len(parts)-1])
}

func TestMatchLines(t *testing.T) {
	got := []string{"HTTP/1.1 200 OK\r", "Content-Type: text/plain", "Date: Mon, 01 Jan", "X-Cache: HIT", "", "body"}
	tests := []struct {
		name string
		want []string
		ok   bool
	}{
		{"exact", got, true},
		{"elided middle", []string{"HTTP/1.1 200 OK", "…", "X-Cache: HIT", "…"}, true},
		{"elided end only", []string{"HTTP/1.1 200 OK", "…"}, true},
		{"wildcard in a line", []string{"HTTP/1.1 200 OK", "Content-Type: text/…", "Date: …", "X-Cache: HIT", "", "body"}, true},
		{"missing line", []string{"HTTP/1.1 200 OK", "X-Cache: HIT", "…"}, false},
		{"wrong order", []string{"…", "X-Cache: HIT", "…", "Content-Type: text/plain", "…"}, false},
		{"output longer than shown", []string{"HTTP/1.1 200 OK"}, false},
		{"wrong status", []string{"HTTP/1.1 304 Not Modified", "…"}, false},
		{"trailing blank lines ignored", append(append([]string{}, got...), "", ""), true},
		{"nothing shown, nothing printed", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if ok := matchLines(tt.want, got); ok != tt.ok {
				t.Errorf("matchLines = %v, want %v", ok, tt.ok)
			}
		})
	}
	if !matchLines(nil, []string{""}) || matchLines(nil, []string{"x"}) {
		t.Error("an empty expectation must match only empty output")
	}
}

func TestSteps(t *testing.T) {
	b := block{file: "f.md", line: 10, body: "$ a=1\n$ curl -s x \\\n  -d y\nout 1\n…\n$ echo $a\n1\n"}
	want := []step{
		{where: "f.md:12", command: "a=1"},
		{where: "f.md:13", command: "curl -s x \\\n  -d y", want: []string{"out 1", "…"}},
		{where: "f.md:17", command: "echo $a", want: []string{"1"}},
	}
	if diff := cmp.Diff(want, steps(b), cmp.AllowUnexported(step{})); diff != "" {
		t.Errorf("steps (-want +got):\n%s", diff)
	}
}
