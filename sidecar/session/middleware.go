package session

import (
	"errors"
	"net/http"
	"strings"

	"github.com/gatehouse-dev/gatehouse/sidecar/contract"
	"github.com/gatehouse-dev/gatehouse/sidecar/identity"
	"github.com/gatehouse-dev/gatehouse/sidecar/problem"
	"github.com/gatehouse-dev/gatehouse/sidecar/request"
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
		if request.AnyMatch(m.public, r) {
			next.ServeHTTP(w, r)
			return
		}
		required := request.AnyMatch(m.requireFor, r)
		raw, present := m.extract(r)
		if !present {
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
		t, err := parseToken(raw)
		if err != nil {
			m.m.lookup(resultInvalid)
			if required {
				m.deny(w, r, "malformed token", "The session token is malformed.")
				return
			}
			next.ServeHTTP(w, r)
			return
		}
		sc, err := m.lookup(r.Context(), t)
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
		if sc != nil {
			r.Header.Set(SubjectHeader, sc.Subject)
			for _, c := range m.forward {
				if v, ok := sc.Claims[c.name]; ok && validHeaderValue(v) {
					r.Header.Set(c.header, v)
				}
			}
			r = r.WithContext(identity.WithSubject(r.Context(), sc.Subject))
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
