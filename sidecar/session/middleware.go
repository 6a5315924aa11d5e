package session

import (
	"errors"
	"net/http"
	"net/textproto"
	"slices"
	"strings"

	"github.com/gatehouse-dev/gatehouse/internal/redisconn"
	"github.com/gatehouse-dev/gatehouse/sidecar/contract"
	"github.com/gatehouse-dev/gatehouse/sidecar/identity"
	"github.com/gatehouse-dev/gatehouse/sidecar/problem"
)

// Headers the app receives for a valid session (the names are part of the
// operator↔sidecar contract).
const (
	SubjectHeader     = contract.SubjectHeader
	claimHeaderPrefix = contract.ClaimHeaderPrefix
)

// challenge is the WWW-Authenticate value without error details.
const challenge = `Bearer realm="gatehouse"`

// Middleware enforces the policy: public paths pass untouched, protected
// paths need a valid session, and other paths get the session's identity when
// the request carries a valid token. Paths are judged on the canonical path
// request.Normalize left, the one the app routes.
func (m *Manager) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The normaliser strips these already; doing it here too keeps the
		// guarantee local to the feature that owns the headers.
		r.Header.Del(SubjectHeader)
		for _, c := range m.forward {
			r.Header.Del(c.header)
		}
		p, _ := r.Context().Value(planKey{m}).(*plan)
		if p == nil {
			// Not planned by the proxy (the middleware used on its own):
			// plan and send the lookup here.
			var b redisconn.Batch
			p = m.plan(r, &b)
			b.Exec(r.Context())
		}
		if p.public {
			next.ServeHTTP(w, r)
			return
		}
		required := p.required
		if !p.present {
			// Anonymous requests to optional paths are not lookups; counting
			// them would drown the signal of rejected requests.
			if required {
				m.m.lookup(resultMissing)
				m.deny(w, r, "", "This path needs a session token.")
				return
			}
			next.ServeHTTP(w, r)
			return
		}
		if p.malformed {
			m.m.lookup(resultInvalid)
			if required {
				m.deny(w, r, "malformed token", "The session token is malformed.")
				return
			}
			next.ServeHTTP(w, r)
			return
		}
		sc, err := m.resolve(r.Context(), p)
		switch {
		case err == nil:
			m.m.lookup(resultValid)
		case errors.Is(err, errExpired):
			m.m.lookup(resultExpired)
			if required {
				m.deny(w, r, "session expired", "The session has expired.")
				return
			}
		case errors.Is(err, errNotFound):
			m.m.lookup(resultInvalid)
			if required {
				m.deny(w, r, "unknown or expired session", "The session token is unknown or has expired.")
				return
			}
		default:
			m.m.lookup(resultError)
			m.log.WarnContext(r.Context(), "session lookup failed", "err", err)
			if required {
				problem.Write(w, r, &problem.Error{
					Status: http.StatusServiceUnavailable,
					Kind:   "session-store-unavailable",
					Title:  "Session store unavailable",
					Detail: "The session could not be checked; try again shortly.",
				})
				return
			}
		}
		if sc == nil {
			if _, ok := identity.Subject(r.Context()); ok {
				// The plan took the tier's session, which Redis has since
				// disowned: no feature after this one may see its subject.
				r = r.WithContext(identity.WithSubject(r.Context(), ""))
			}
		}
		if sc != nil {
			r.Header.Set(SubjectHeader, sc.Subject)
			for _, c := range m.forward {
				if v, ok := sc.Claims[c.name]; ok && validHeaderValue(v) {
					r.Header.Set(c.header, v)
				}
			}
			if s, ok := identity.Subject(r.Context()); !ok || s != sc.Subject {
				r = r.WithContext(identity.WithSubject(r.Context(), sc.Subject))
			}
		}
		next.ServeHTTP(w, r)
	})
}

// extract returns the raw token, preferring the header over the cookie. A
// header with the wrong scheme counts as present, so the client learns its
// token was rejected rather than missing.
func (m *Manager) extract(r *http.Request) (string, bool) {
	if m.header != "" {
		if v := r.Header.Get(m.header); v != "" {
			if m.scheme == "" {
				return strings.TrimSpace(v), true
			}
			scheme, rest, ok := strings.Cut(v, " ")
			if !ok || !strings.EqualFold(scheme, m.scheme) {
				return "", true
			}
			return strings.TrimSpace(rest), true
		}
	}
	if m.cookie != "" {
		if c, err := r.Cookie(m.cookie); err == nil && c.Value != "" {
			return c.Value, true
		}
	}
	return "", false
}

// stripToken removes the session token from r unless the policy forwards
// it (forwardToken): it is a bearer credential, and an app that logs its
// request headers, or passes them on to another service, would leak it.
// Only what the sidecar reads as a token goes: the token header's values
// in the policy's scheme (all of them without a scheme; an Authorization:
// Basic for the app stays) and every cookie of the token's name, the other
// cookies of the Cookie header kept as they were.
func (m *Manager) stripToken(r *http.Request) {
	if m.forwardToken {
		return
	}
	if m.header != "" {
		if vs, ok := r.Header[m.header]; ok {
			kept := slices.DeleteFunc(slices.Clone(vs), m.isToken)
			if len(kept) == 0 {
				delete(r.Header, m.header)
			} else {
				r.Header[m.header] = kept
			}
		}
	}
	if m.cookie != "" {
		stripCookie(r.Header, m.cookie)
	}
}

// isToken reports whether a value of the token header carries a token in
// the policy's scheme, as extract reads it.
func (m *Manager) isToken(v string) bool {
	if m.scheme == "" {
		return true
	}
	scheme, _, _ := strings.Cut(v, " ")
	return strings.EqualFold(scheme, m.scheme)
}

// stripCookie removes every cookie called name from the Cookie header
// lines of h (HTTP/2 clients send one line per cookie), splitting and
// trimming them as net/http reads cookies, so any cookie the sidecar would
// read as the token is gone. Cookies of other names keep their bytes;
// a line left empty is dropped.
func stripCookie(h http.Header, name string) {
	lines, ok := h["Cookie"]
	if !ok {
		return
	}
	out := make([]string, 0, len(lines))
	for _, line := range lines {
		var kept []string
		found := false
		for part := range strings.SplitSeq(line, ";") {
			part = textproto.TrimString(part)
			if part == "" {
				continue
			}
			n, _, _ := strings.Cut(part, "=")
			if textproto.TrimString(n) == name {
				found = true
				continue
			}
			kept = append(kept, part)
		}
		switch {
		case !found:
			out = append(out, line)
		case len(kept) > 0:
			out = append(out, strings.Join(kept, "; "))
		}
	}
	if len(out) == 0 {
		delete(h, "Cookie")
		return
	}
	h["Cookie"] = out
}

// deny answers 401 with a Bearer challenge (RFC 6750); reason, when set,
// marks that a token was presented but not accepted.
func (m *Manager) deny(w http.ResponseWriter, r *http.Request, reason, detail string) {
	c := challenge
	if reason != "" {
		c += `, error="invalid_token", error_description="` + reason + `"`
	}
	problem.Write(w, r, &problem.Error{
		Status: http.StatusUnauthorized,
		Kind:   "session-required",
		Title:  "Session required",
		Detail: detail,
		Header: http.Header{"Www-Authenticate": {c}},
	})
}
