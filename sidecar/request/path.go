package request

import (
	"unicode/utf8"
)

// Reasons a path is refused. Each is the metric label and names the rule in
// docs/security.md ("Request paths").
const (
	// ReasonMalformed: the path is not absolute or has a broken percent-escape.
	ReasonMalformed = "malformed"
	// ReasonEncodedSlash: %2F, which some stacks decode before routing and
	// others keep inside the segment.
	ReasonEncodedSlash = "encoded-slash"
	// ReasonBackslash: \ or %5C, a path separator on Windows/IIS and in
	// servers that emulate it.
	ReasonBackslash = "backslash"
	// ReasonControl: a NUL or other control character, decoded or raw.
	ReasonControl = "control-character"
	// ReasonDotParameter: a segment that resolves to "." or ".." once its
	// ";parameters" are removed, as Tomcat, Jetty and Spring do.
	ReasonDotParameter = "dot-segment-parameter"
	// ReasonPathParameter: any other ";" (or %3B) in the path, unless the
	// pod allows path parameters.
	ReasonPathParameter = "path-parameter"
	// ReasonEmptyParameter: with path parameters allowed, a segment that is
	// only parameters ("/a/;x/..") anywhere but at the end.
	ReasonEmptyParameter = "empty-segment-parameter"
	// ReasonDoubleEncoding: %25 followed by two hex digits, which a stack
	// that decodes twice turns into a different path.
	ReasonDoubleEncoding = "double-encoding"
	// ReasonInvalidUTF8: percent-escapes that do not decode to UTF-8
	// (overlong forms such as %C0%AE among them).
	ReasonInvalidUTF8 = "invalid-utf8"
)

// Refusal says why a request path is refused.
type Refusal struct {
	// Reason is one of the Reason* constants.
	Reason string
	// Detail explains the rule to the client.
	Detail string
}

func (r *Refusal) Error() string { return "request path refused (" + r.Reason + "): " + r.Detail }

var details = map[string]string{
	ReasonMalformed:      "The request path is not an absolute path or contains a malformed percent-escape.",
	ReasonEncodedSlash:   "The request path contains an encoded slash (%2F); applications disagree on whether it separates segments.",
	ReasonBackslash:      "The request path contains a backslash (\\ or %5C); some servers treat it as a path separator.",
	ReasonControl:        "The request path contains a NUL or control character.",
	ReasonDotParameter:   "A path segment resolves to '.' or '..' once its ';' parameters are removed, as Java servlet containers do.",
	ReasonPathParameter:  "The request path contains ';' (or %3B); Java servlet containers strip ';' parameters before routing and other servers do not.",
	ReasonEmptyParameter: "A path segment consists only of ';' parameters; servlet containers would drop it and route a different path.",
	ReasonDoubleEncoding: "The request path contains a double-encoded escape (%25 followed by two hex digits); servers that decode twice would route a different path.",
	ReasonInvalidUTF8:    "The request path's percent-escapes do not decode to valid UTF-8; servers decode such bytes differently (overlong '.' and '/' among them).",
}

func refuse(reason string) *Refusal { return &Refusal{Reason: reason, Detail: details[reason]} }

// Options are the per-pod exceptions to the default refusals. Both exist for
// real applications; neither is on by default (docs/security.md).
type Options struct {
	// AllowEncodedSlash keeps %2F inside a segment (it neither splits the
	// segment nor is decoded for matching), for apps that route on the raw
	// path and carry names containing "/" in one segment, such as
	// RabbitMQ's management API ("/api/queues/%2F/orders").
	AllowEncodedSlash bool
	// AllowPathParameters keeps ";" path parameters, for Java servlet apps
	// that rewrite session ids into URLs (";jsessionid=…") or use JAX-RS
	// matrix parameters. Matchers then compare the path with parameters
	// removed, which is how those apps route it. Segments that resolve to
	// "." or ".." once parameters are removed stay refused.
	AllowPathParameters bool

	// literal canonicalises a rule's path prefix rather than a request path:
	// only a malformed escape and ";" are refused (a prefix cannot say
	// whether it means a parameter), and what no accepted request contains
	// (a backslash, a control character, …) is kept escaped, so that a
	// prefix spelling it can never match.
	literal bool
}

// canonical is one request path in the three forms the sidecar needs.
type canonical struct {
	// escaped is the path the app receives: url.URL.RawPath.
	escaped string
	// decoded is escaped with every escape decoded: url.URL.Path.
	decoded string
	// match is what matchers compare: escaped, without ";" parameters.
	match string
}

// Character classes of RFC 3986 §2 and §3.3.
const (
	classUnreserved = 1 << iota // ALPHA DIGIT - . _ ~
	classPchar                  // unreserved, sub-delims other than ";", ":" and "@"
)

var classes = func() (t [256]uint8) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = classUnreserved | classPchar
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = classUnreserved | classPchar
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = classUnreserved | classPchar
	}
	for _, c := range "-._~" {
		t[c] = classUnreserved | classPchar
	}
	for _, c := range "!$&'()*+,=:@" {
		t[c] = classPchar
	}
	return t
}()

// isCanonical reports whether p is already canonical with nothing to decode
// or refuse: an absolute path of plain characters, no empty segment but a
// trailing one, and no dot segment. Most requests take this path, which
// allocates nothing.
func isCanonical(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	start := 1
	for i := 1; i <= len(p); i++ {
		if i == len(p) || p[i] == '/' {
			switch seg := p[start:i]; seg {
			case "":
				if i != len(p) {
					return false
				}
			case ".", "..":
				return false
			}
			start = i + 1
			continue
		}
		if classes[p[i]]&classPchar == 0 {
			return false
		}
	}
	return true
}

const upperHex = "0123456789ABCDEF"

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

func isHex(c byte) bool { _, ok := unhex(c); return ok }

// builder accumulates the three forms of a path.
type builder struct {
	esc, dec, mat []byte
}

// mark is where a segment starts in each form, to pop it for "..".
type mark struct{ esc, dec, mat int }

func (b *builder) mark() mark { return mark{len(b.esc), len(b.dec), len(b.mat)} }

func (b *builder) reset(m mark) {
	b.esc, b.dec, b.mat = b.esc[:m.esc], b.dec[:m.dec], b.mat[:m.mat]
}

// canonicalize turns raw, a path as sent on the wire, into its canonical
// forms, or refuses it. It follows RFC 3986 §6.2.2: escapes of unreserved
// characters are decoded and every other escape is written in upper case
// (§6.2.2.1-2), characters that may not appear raw are escaped, and dot
// segments are removed (§5.2.4, never above the root); empty segments are
// merged as Envoy's merge_slashes does, keeping a trailing slash. Spellings
// that stacks disagree on are refused (see the Reason constants).
func canonicalize(raw string, o Options) (canonical, *Refusal) {
	if isCanonical(raw) {
		return canonical{escaped: raw, decoded: raw, match: raw}, nil
	}
	if raw == "" || raw[0] != '/' {
		return canonical{}, refuse(ReasonMalformed)
	}
	b := builder{
		esc: make([]byte, 0, len(raw)),
		dec: make([]byte, 0, len(raw)),
		mat: make([]byte, 0, len(raw)),
	}
	var stack []mark
	trailing := false
	rest := raw[1:]
	for {
		seg, tail, more := cut(rest)
		last := !more
		start := b.mark()
		name, params, ref := b.segment(seg, o)
		if ref != nil {
			return canonical{}, ref
		}
		switch {
		case name == "" && !params:
			// An empty segment: merged, or the trailing slash.
			b.reset(start)
			trailing = last
		case name == ".":
			b.reset(start)
			trailing = last
		case name == "..":
			b.reset(start)
			if n := len(stack); n > 0 {
				b.reset(stack[n-1])
				stack = stack[:n-1]
			}
			trailing = last
		case name == "" && !last:
			// Servlet containers drop a parameters-only segment and would
			// then resolve a following ".." against a different parent.
			return canonical{}, refuse(ReasonEmptyParameter)
		default:
			stack = append(stack, start)
			trailing = false
		}
		if last {
			break
		}
		rest = tail
	}
	if trailing || len(b.esc) == 0 {
		b.esc = append(b.esc, '/')
		b.dec = append(b.dec, '/')
		b.mat = append(b.mat, '/')
	}
	c := canonical{escaped: string(b.esc), decoded: string(b.dec)}
	if string(b.mat) == c.escaped {
		c.match = c.escaped
	} else {
		c.match = string(b.mat)
	}
	return c, nil
}

// cut splits s at its first '/'.
func cut(s string) (before, after string, found bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == '/' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// segment appends "/" and the canonical forms of one segment (the bytes
// between two slashes, as sent). It returns the segment's name (the
// escaped form before any ";") and whether it had parameters.
func (b *builder) segment(s string, o Options) (name string, params bool, _ *Refusal) {
	b.esc = append(b.esc, '/')
	b.dec = append(b.dec, '/')
	b.mat = append(b.mat, '/')
	escStart, decStart := len(b.esc), len(b.dec)
	nameEnd := -1 // where ";" starts the parameters, in b.esc
	high := false // a decoded byte >= 0x80: check UTF-8 at the end
	for i := 0; i < len(s); i++ {
		c := s[i]
		var ref *Refusal
		switch c {
		case '%':
			if i+2 >= len(s) {
				return "", false, refuse(ReasonMalformed)
			}
			hi, ok1 := unhex(s[i+1])
			lo, ok2 := unhex(s[i+2])
			if !ok1 || !ok2 {
				return "", false, refuse(ReasonMalformed)
			}
			i += 2
			d := hi<<4 | lo
			high = high || d >= 0x80
			ref = b.decoded(d, nameEnd < 0, o)
		case ';':
			if nameEnd < 0 {
				nameEnd = len(b.esc)
				if n := b.esc[escStart:nameEnd]; string(n) == "." || string(n) == ".." {
					return "", false, refuse(ReasonDotParameter)
				}
				if !o.AllowPathParameters {
					return "", false, refuse(ReasonPathParameter)
				}
			}
			b.add(c, false)
		default:
			high = high || c >= 0x80
			ref = b.raw(c, nameEnd < 0, o)
		}
		if ref != nil {
			return "", false, ref
		}
	}
	if ref := b.check(b.dec[decStart:], high, o); ref != nil {
		return "", false, ref
	}
	if nameEnd < 0 {
		nameEnd = len(b.esc)
	}
	return string(b.esc[escStart:nameEnd]), nameEnd < len(b.esc), nil
}

// decoded appends the byte d of a percent-escape.
func (b *builder) decoded(d byte, inName bool, o Options) *Refusal {
	switch {
	case classes[d]&classUnreserved != 0:
		b.add(d, inName) // RFC 3986 §6.2.2.2
		return nil
	case d == '/' && !o.AllowEncodedSlash && !o.literal:
		return refuse(ReasonEncodedSlash)
	case o.literal || d == '/':
	case d == '\\':
		return refuse(ReasonBackslash)
	case d < 0x20 || d == 0x7f:
		return refuse(ReasonControl)
	case d == ';' && !o.AllowPathParameters:
		return refuse(ReasonPathParameter)
	}
	b.addEscaped(d, inName)
	return nil
}

// raw appends the byte c, sent unescaped (";" aside).
func (b *builder) raw(c byte, inName bool, o Options) *Refusal {
	switch {
	case classes[c]&classPchar != 0:
		b.add(c, inName)
		return nil
	case o.literal:
	case c == '\\':
		return refuse(ReasonBackslash)
	case c < 0x20 || c == 0x7f:
		return refuse(ReasonControl)
	}
	// Not allowed raw in a path (RFC 3986 §3.3): '"', '<', '[', a byte
	// >= 0x80 and the like; escaping keeps its meaning. In a rule's prefix,
	// a backslash or control character is kept escaped too.
	b.addEscaped(c, inName)
	return nil
}

// check refuses a segment whose decoded form (dec) another server would
// read differently: a '%' that came from %25 before two hex digits would
// be decoded again by a server that decodes twice, and bytes that are not
// UTF-8 are decoded differently everywhere.
func (b *builder) check(dec []byte, high bool, o Options) *Refusal {
	if o.literal {
		return nil
	}
	for j := 0; j+2 < len(dec); j++ {
		if dec[j] == '%' && isHex(dec[j+1]) && isHex(dec[j+2]) {
			return refuse(ReasonDoubleEncoding)
		}
	}
	if high && !utf8.Valid(dec) {
		return refuse(ReasonInvalidUTF8)
	}
	return nil
}

// add appends c, which stands for itself in every form; inName says
// whether it belongs in the match form (it does not inside parameters).
func (b *builder) add(c byte, inName bool) {
	b.esc = append(b.esc, c)
	b.dec = append(b.dec, c)
	if inName {
		b.mat = append(b.mat, c)
	}
}

// addEscaped appends c, escaped in the escaped and match forms.
func (b *builder) addEscaped(c byte, inName bool) {
	e := [3]byte{'%', upperHex[c>>4], upperHex[c&15]}
	b.esc = append(b.esc, e[:]...)
	b.dec = append(b.dec, c)
	if inName {
		b.mat = append(b.mat, e[:]...)
	}
}
