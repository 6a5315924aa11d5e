// Package request is the first step of the sidecar's chain: it turns the
// request a client sent into the one request that every feature matches and
// the app receives, and it holds the one matcher type the features compile
// their rules into.
//
// Normalize canonicalises the path once (RFC 3986 §6, dot segments removed,
// slashes merged; Envoy's normalize_path + merge_slashes model) and rewrites
// the request to it, refuses with 400 the spellings that servers disagree on,
// removes the headers named in Connection (RFC 9110 §7.6.1) and every header
// that folds to the sidecar's reserved X-Gatehouse- prefix. A Matcher then
// compares the canonical path, so what a rule matched is what the app routes.
// docs/security.md explains each rule and the framework behaviour behind it.
package request

import (
	"context"
	"net/http"
	"net/url"
	"strings"

	"github.com/gatehouse-dev/gatehouse/sidecar/problem"
)

// Normalize returns next behind the normaliser. refused, when not nil, is
// called with the Reason of every refused request (for metrics).
func Normalize(next http.Handler, o Options, refused func(reason string)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Headers first, so that the 400 below is written for the request
		// as it will be judged, and nothing reads a header the app won't get.
		dropConnectionOptions(r.Header)
		stripReserved(r.Header)
		stripReserved(r.Trailer)

		if raw := wirePath(r.URL); !isCanonical(raw) {
			c, ref := canonicalize(raw, o)
			if ref != nil {
				if refused != nil {
					refused(ref.Reason)
				}
				problem.Write(w, r, &problem.Error{
					Status: http.StatusBadRequest,
					Kind:   problemKind(ref.Reason),
					Title:  "Request path refused",
					Detail: ref.Detail,
				})
				return
			}
			// RawPath is set even where it equals the default encoding of
			// Path, so that Path (and the reverse proxy) read it as is.
			u := *r.URL
			u.Path, u.RawPath = c.decoded, c.escaped
			r.URL = &u
			r.RequestURI = u.RequestURI()
			if c.match != c.escaped {
				r = r.WithContext(context.WithValue(r.Context(), matchPathKey{}, c.match))
			}
		}
		next.ServeHTTP(w, r)
	})
}

func problemKind(reason string) string {
	if reason == ReasonMalformed {
		return "malformed-path"
	}
	return "ambiguous-path"
}

// wirePath is the path as the client sent it. net/url keeps the original
// spelling in RawPath whenever it differs from the default encoding of
// Path, so this recovers %2F, lower-case escapes and the like exactly.
func wirePath(u *url.URL) string {
	if u.RawPath != "" {
		return u.RawPath
	}
	return u.EscapedPath()
}

type matchPathKey struct{}

// Path returns the path matchers compare for r: the canonical escaped path
// (url.URL.RawPath as Normalize set it), without ";" parameters when the pod
// allows them. On a request Normalize did not see it is the escaped path.
func Path(r *http.Request) string {
	p := r.URL.RawPath
	if p == "" {
		p = r.URL.EscapedPath()
	}
	// Only a path with parameters has a separate match form; looking it up
	// for every other request would cost a context walk per matcher.
	if strings.IndexByte(p, ';') >= 0 {
		if m, ok := r.Context().Value(matchPathKey{}).(string); ok {
			return m
		}
	}
	return p
}

// Canonical returns the canonical escaped form of an absolute path, as
// Normalize would rewrite a request for it with o, or why it is refused.
func Canonical(path string, o Options) (string, error) {
	c, ref := canonicalize(path, o)
	if ref != nil {
		return "", ref
	}
	return c.escaped, nil
}
