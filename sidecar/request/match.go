package request

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"
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

// Compile compiles m, reporting every problem as config.FieldErrors with
// paths relative to the match ("pathPrefix", "methods[1]", "header.name").
// defaultMethods apply when m names no method (nil: any method). The prefix
// is canonicalised the way request paths are, so "/api//v1/./x" matches
// what "/api/v1/x" does; a prefix CheckPath refuses is refused, and one
// escaping what no accepted request path contains (%5C, %00) compiles to
// one that never matches, since such requests are refused before any
// matcher.
func Compile(m config.Match, defaultMethods []string) (*Matcher, error) {
	m.Default(defaultMethods)
	var errs config.FieldErrors
	out, err := CompilePrefix(m.PathPrefix, m.CaseInsensitive)
	if err != nil {
		errs.Add("pathPrefix", err.Error())
		out = &Matcher{}
	}
	for i, meth := range m.Methods {
		if !methodRE.MatchString(meth) {
			errs.Add(fmt.Sprintf("methods[%d]", i), fmt.Sprintf("%q must be an upper-case HTTP method", meth))
		}
	}
	out.methods = m.Methods
	if h := m.Header; h != nil {
		errs.Header("header.name", h.Name)
		out.header, out.value = http.CanonicalHeaderKey(h.Name), h.Value
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// CompilePrefix compiles a bare path prefix that matches any method, such
// as a session policy's requireFor. The error says what is wrong with
// prefix.
func CompilePrefix(prefix string, caseInsensitive bool) (*Matcher, error) {
	if err := CheckPath(prefix); err != nil {
		return nil, err
	}
	c, ref := canonicalize(prefix, Options{AllowEncodedSlash: true, literal: true})
	if ref != nil {
		return nil, fmt.Errorf("%q: %s", prefix, ref.Detail)
	}
	m := &Matcher{prefix: c.match, fold: caseInsensitive}
	if m.fold {
		m.prefix = foldASCII(m.prefix)
	}
	return m, nil
}

// methodRE is what a rule may name as a method: an upper-case token, as
// every registered method is (RFC 9110 §9.1: methods are case-sensitive).
var methodRE = regexp.MustCompile(`^[A-Z]+$`)

// CheckPath reports why p, a path or path prefix written in a rule, can
// never be compared with a request path: it does not start with "/", it
// carries a query or fragment, a broken escape, or a character no accepted
// request path has (a backslash, ";", a control character: the normaliser
// refuses such requests before any rule sees them).
func CheckPath(p string) error {
	switch {
	case !strings.HasPrefix(p, "/"):
		return fmt.Errorf("%q must start with /", p)
	case strings.ContainsAny(p, "?#"):
		return fmt.Errorf("%q contains a query or fragment; paths are matched without them", p)
	case strings.ContainsAny(p, `\;`) || strings.ContainsFunc(p, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return fmt.Errorf("%q contains a backslash, ';' or a control character, which no accepted request path has", p)
	}
	if _, err := url.PathUnescape(p); err != nil {
		return fmt.Errorf("%q has a malformed percent-escape", p)
	}
	return nil
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
