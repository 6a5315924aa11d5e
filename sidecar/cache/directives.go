package cache

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/dunglas/httpsfv"
)

// absent marks a directive with a delta-seconds argument that is not present.
const absent = time.Duration(-1)

// maxDelta is the largest delta-seconds a cache must represent; larger
// values mean it (RFC 9111 1.2.2).
const maxDelta = (1 << 31) * time.Second

// directives are the caching directives of one message (RFC 9111 5.2,
// RFC 5861): a request's Cache-Control, or a response's Cache-Control or
// targeted field (RFC 9213). Unknown directives are ignored (5.2.3).
type directives struct {
	NoStore, NoCache, Private, Public bool
	MustRevalidate, ProxyRevalidate   bool
	MustUnderstand, OnlyIfCached      bool
	// MaxAge, SMaxAge, MinFresh, MaxStale, SWR and SIE are absent when not
	// present. A malformed max-age or s-maxage is 0 (RFC 9111 4.2.1: treat
	// invalid freshness information as stale); other malformed values are
	// ignored, which never lets a response be used longer.
	MaxAge, SMaxAge, MinFresh, MaxStale time.Duration
	SWR, SIE                            time.Duration
	// MaxStaleAny is max-stale without a value: any staleness is accepted.
	MaxStaleAny bool
	// Targeted names the targeted field the response directives came from
	// ("" for Cache-Control). A targeted field overrides Expires too.
	Targeted string
}

func newDirectives() directives {
	return directives{MaxAge: absent, SMaxAge: absent, MinFresh: absent, MaxStale: absent, SWR: absent, SIE: absent}
}

// targetedFields is the sidecar's target list (RFC 9213 2.1), in order:
// its own field, then the one every CDN-like gateway cache obeys.
var targetedFields = []string{"Gatehouse-Cache-Control", "CDN-Cache-Control"}

// ownField is the targeted field meant for this sidecar alone: it is not
// forwarded to clients.
const ownField = "Gatehouse-Cache-Control"

// requestDirectives parses a request's Cache-Control. Without one, an
// HTTP/1.0 "Pragma: no-cache" means no-cache (RFC 9111 5.4).
func requestDirectives(h http.Header) directives {
	d := parseCacheControl(h.Values("Cache-Control"))
	if len(h.Values("Cache-Control")) == 0 {
		for _, p := range h.Values("Pragma") {
			for part := range strings.SplitSeq(p, ",") {
				if strings.EqualFold(strings.TrimSpace(part), "no-cache") {
					d.NoCache = true
				}
			}
		}
	}
	return d
}

// responseDirectives parses a response's caching directives: the first
// targeted field with a valid, non-empty value, else Cache-Control.
func responseDirectives(h http.Header) directives {
	for _, name := range targetedFields {
		if vs := h.Values(name); len(vs) > 0 {
			if d, ok := parseTargeted(vs); ok {
				d.Targeted = name
				return d
			}
		}
	}
	return parseCacheControl(h.Values("Cache-Control"))
}

// parseCacheControl parses Cache-Control field lines: comma-separated
// directives, case-insensitive names, token or quoted-string arguments
// (quoted commas do not split). The first occurrence of a directive counts.
func parseCacheControl(lines []string) directives {
	d := newDirectives()
	seen := map[string]bool{}
	for _, line := range lines {
		for _, part := range splitDirectives(line) {
			name, arg, hasArg := strings.Cut(part, "=")
			name = strings.ToLower(strings.TrimSpace(name))
			if name == "" || seen[name] {
				continue
			}
			seen[name] = true
			arg = strings.TrimSpace(arg)
			if len(arg) >= 2 && arg[0] == '"' && arg[len(arg)-1] == '"' {
				arg = unquote(arg[1 : len(arg)-1])
			}
			d.set(name, arg, hasArg)
		}
	}
	return d
}

// splitDirectives splits a Cache-Control line at commas outside quoted strings.
func splitDirectives(line string) []string {
	var out []string
	quoted, escaped, start := false, false, 0
	for i := 0; i < len(line); i++ {
		switch c := line[i]; {
		case escaped:
			escaped = false
		case quoted && c == '\\':
			escaped = true
		case c == '"':
			quoted = !quoted
		case c == ',' && !quoted:
			out = append(out, strings.TrimSpace(line[start:i]))
			start = i + 1
		}
	}
	return append(out, strings.TrimSpace(line[start:]))
}

func unquote(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// set records one directive. Qualified no-cache and private (with field
// names) are taken as their unqualified forms: stricter, never wrong.
func (d *directives) set(name, arg string, hasArg bool) {
	switch name {
	case "no-store":
		d.NoStore = true
	case "no-cache":
		d.NoCache = true
	case "private":
		d.Private = true
	case "public":
		d.Public = true
	case "must-revalidate":
		d.MustRevalidate = true
	case "proxy-revalidate":
		d.ProxyRevalidate = true
	case "must-understand":
		d.MustUnderstand = true
	case "only-if-cached":
		d.OnlyIfCached = true
	case "max-age":
		d.MaxAge = deltaOr(arg, hasArg, 0)
	case "s-maxage":
		d.SMaxAge = deltaOr(arg, hasArg, 0)
	case "min-fresh":
		d.MinFresh = deltaOr(arg, hasArg, absent)
	case "max-stale":
		if !hasArg {
			d.MaxStaleAny = true
			return
		}
		d.MaxStale = deltaOr(arg, hasArg, absent)
	case "stale-while-revalidate":
		d.SWR = deltaOr(arg, hasArg, absent)
	case "stale-if-error":
		d.SIE = deltaOr(arg, hasArg, absent)
	}
}

// deltaOr parses delta-seconds (RFC 9111 1.2.2), capped at 2^31 s, or
// returns bad when the argument is missing or not a non-negative integer.
func deltaOr(arg string, hasArg bool, bad time.Duration) time.Duration {
	if !hasArg || arg == "" || strings.TrimLeft(arg, "0123456789") != "" {
		return bad
	}
	n, err := strconv.ParseInt(arg, 10, 64)
	if err != nil || n > int64(maxDelta/time.Second) {
		return maxDelta // only overflow fails on digits
	}
	return time.Duration(n) * time.Second
}

// parseTargeted parses a targeted field (RFC 9213 2.2): a Structured Field
// Dictionary. An invalid or empty one is not used (ok false), so the
// response falls back to Cache-Control.
func parseTargeted(lines []string) (directives, bool) {
	dict, err := httpsfv.UnmarshalDictionary(lines)
	if err != nil || len(dict.Names()) == 0 {
		return directives{}, false
	}
	d := newDirectives()
	for _, name := range dict.Names() {
		m, _ := dict.Get(name)
		item, isItem := m.(httpsfv.Item)
		switch v := item.Value; {
		case !isItem:
			// An inner list: a qualified directive (private=("a" "b")).
			d.set(name, "", false)
		case v == true:
			d.set(name, "", false)
		case v == false:
			// An explicit false turns the directive off.
		default:
			if n, ok := v.(int64); ok {
				d.set(name, strconv.FormatInt(n, 10), true)
				continue
			}
			// A string or token argument: a qualified directive, or a
			// malformed number.
			d.set(name, "x", true)
		}
	}
	return d, true
}

// noStale reports whether the response may never be served stale: must-
// and proxy-revalidate, s-maxage (which implies proxy-revalidate for a
// shared cache, RFC 9111 5.2.2.10) and no-cache (RFC 9111 4.2.4).
func (d directives) noStale() bool {
	return d.MustRevalidate || d.ProxyRevalidate || d.SMaxAge >= 0 || d.NoCache
}

// sharedAuth reports whether a response to a request with Authorization
// may be reused for other requests (RFC 9111 3.5).
func (d directives) sharedAuth() bool {
	return d.MustRevalidate || d.Public || d.SMaxAge >= 0
}
