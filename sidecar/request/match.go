package request

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/gatehouse-dev/gatehouse/sidecar/config"
)

// Matcher is a compiled config.Match. Sessions (requireFor, publicPaths),
// rate-limit rules, cache rules and invalidation rules all decide with one,
// over the request as Normalize left it. It is immutable.
type Matcher struct {
	// prefix is the canonical escaped form of pathPrefix (see Path),
	// lower-cased when fold is set.
	prefix  string
	fold    bool
	methods []string // upper case; empty matches any method
	header  string   // canonical name; empty: no header condition
	value   string   // required value; empty: any value
}

// Compile compiles m. defaultMethods apply when m names no method (nil:
// any method). The prefix is canonicalised the way request paths are, so
// "/api//v1/./x" matches what "/api/v1/x" does; a prefix spelling what no
// accepted request path contains (a backslash, ";", %5C) compiles to one
// that never matches, since such requests are refused before any matcher.
func Compile(m config.Match, defaultMethods []string) (*Matcher, error) {
	prefix := m.PathPrefix
	if prefix == "" {
		prefix = "/"
	}
	c, ref := canonicalize(prefix, Options{AllowEncodedSlash: true, literal: true})
	if ref != nil {
		return nil, fmt.Errorf("pathPrefix %q: %w", m.PathPrefix, ref)
	}
	out := &Matcher{prefix: c.match, fold: m.CaseInsensitive}
	if out.fold {
		out.prefix = foldASCII(out.prefix)
	}
	methods := m.Methods
	if len(methods) == 0 {
		methods = defaultMethods
	}
	for _, meth := range methods {
		out.methods = append(out.methods, strings.ToUpper(meth))
	}
	if h := m.Header; h != nil {
		if h.Name == "" {
			return nil, fmt.Errorf("header.name is required")
		}
		out.header, out.value = http.CanonicalHeaderKey(h.Name), h.Value
	}
	return out, nil
}

// Match reports whether r satisfies every condition of m.
func (m *Matcher) Match(r *http.Request) bool {
	if !m.MatchPath(Path(r)) {
		return false
	}
	if len(m.methods) > 0 && !slices.Contains(m.methods, r.Method) {
		return false
	}
	if m.header != "" {
		vs, ok := r.Header[m.header]
		if !ok || (m.value != "" && !slices.Contains(vs, m.value)) {
			return false
		}
	}
	return true
}

// MatchPath reports whether path, as Path returns it, starts with the
// prefix: a plain string prefix, so "/api" also matches "/apiv2" (write
// "/api/" for the directory).
func (m *Matcher) MatchPath(path string) bool {
	if !m.fold {
		return strings.HasPrefix(path, m.prefix)
	}
	if len(path) < len(m.prefix) {
		return false
	}
	for i := 0; i < len(m.prefix); i++ {
		c := path[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != m.prefix[i] {
			return false
		}
	}
	return true
}

// CaseInsensitive reports whether m ignores the case of ASCII letters.
func (m *Matcher) CaseInsensitive() bool { return m.fold }

// AnyMatch reports whether any of ms matches r.
func AnyMatch(ms []*Matcher, r *http.Request) bool {
	for _, m := range ms {
		if m.Match(r) {
			return true
		}
	}
	return false
}

// FoldCase lower-cases the ASCII letters of s, the folding CaseInsensitive
// matchers apply; a feature keying state by path uses it so that spellings
// one matcher treats as equal share the state too.
func FoldCase(s string) string { return foldASCII(s) }

func foldASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}
