package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatehouse-dev/gatehouse/internal/redisconn"
	"github.com/gatehouse-dev/gatehouse/sidecar/config"
	"github.com/gatehouse-dev/gatehouse/sidecar/problem"
)

// Limits on what the admin API accepts. They keep stored payloads small and
// forwarded headers sane.
const (
	maxBodyBytes    = 64 << 10
	maxSubjectBytes = 1024
	maxClaims       = 64
	maxClaimBytes   = 4096
)

// RegisterAdmin adds the session admin API to mux. The mux is served on the
// loopback admin listener: whoever reaches it can mint sessions.
func (m *Manager) RegisterAdmin(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/sessions", m.handleCreate)
	mux.HandleFunc("DELETE /v1/sessions", m.handleRevoke)
	mux.HandleFunc("GET /v1/sessions/self", m.handleSelf)
	mux.HandleFunc("DELETE /v1/subjects/{subject}/sessions", m.handleRevokeAll)
}

// CreateRequest is the body of POST /v1/sessions.
type CreateRequest struct {
	// Subject identifies the user or client; required.
	Subject string `json:"subject"`
	// TTL is the session's absolute lifetime ("15m"). Without it a
	// non-sliding session lives for the policy ttl and a sliding one for
	// config.DefaultMaxLifetime (it still ends after the policy ttl of inactivity).
	TTL config.Duration `json:"ttl,omitempty"`
	// Claims are extra auth-context fields stored encrypted with the session.
	Claims map[string]string `json:"claims,omitempty"`
}

// CreateResponse is the answer to POST /v1/sessions.
type CreateResponse struct {
	// Token is the bearer token to hand to the client. It is shown once.
	Token string `json:"token"`
	// ExpiresAt is when the session ends unless used (sliding) or for good.
	ExpiresAt time.Time `json:"expiresAt"`
}

// RevokeAllResponse is the answer to DELETE /v1/subjects/{subject}/sessions.
type RevokeAllResponse struct {
	Revoked int `json:"revoked"`
}

// SelfResponse is the answer to GET /v1/sessions/self.
type SelfResponse struct {
	Subject   string            `json:"subject"`
	Claims    map[string]string `json:"claims,omitempty"`
	CreatedAt time.Time         `json:"createdAt"`
	// ExpiresAt is the absolute end of the session.
	ExpiresAt time.Time `json:"expiresAt"`
	// IdleExpiresAt is when Redis drops the session unless it is used.
	IdleExpiresAt time.Time `json:"idleExpiresAt"`
}

func (m *Manager) handleCreate(w http.ResponseWriter, r *http.Request) {
	var req CreateRequest
	if err := decodeJSON(w, r, &req); err != nil {
		badRequest(w, r, err.Error())
		return
	}
	if msg := validateCreate(req); msg != "" {
		badRequest(w, r, msg)
		return
	}
	tok, exp, err := m.create(r.Context(), req.Subject, req.Claims, req.TTL.D())
	if err != nil {
		m.unavailable(w, r, "create session", err)
		return
	}
	writeJSON(w, http.StatusCreated, CreateResponse{Token: tok, ExpiresAt: exp.UTC()})
}

func validateCreate(req CreateRequest) string {
	switch {
	case req.Subject == "":
		return "subject is required"
	case len(req.Subject) > maxSubjectBytes:
		return fmt.Sprintf("subject is longer than %d bytes", maxSubjectBytes)
	case !validHeaderValue(req.Subject):
		return "subject contains control characters"
	case req.TTL < 0 || req.TTL.D() > config.MaxSessionLifetime:
		return fmt.Sprintf("ttl must be positive and at most %s", config.MaxSessionLifetime)
	case req.TTL > 0 && req.TTL.D() < time.Millisecond:
		return "ttl must be at least 1ms"
	case len(req.Claims) > maxClaims:
		return fmt.Sprintf("at most %d claims are allowed", maxClaims)
	}
	for k, v := range req.Claims {
		if !validHeaderName(k) {
			return fmt.Sprintf("claim name %q must be a header token (letters, digits, -, _ ...)", k)
		}
		if len(v) > maxClaimBytes || !validHeaderValue(v) {
			return fmt.Sprintf("claim %q must be at most %d bytes without control characters", k, maxClaimBytes)
		}
	}
	return ""
}

func (m *Manager) handleRevoke(w http.ResponseWriter, r *http.Request) {
	t, ok := m.adminToken(w, r)
	if !ok {
		return
	}
	if _, err := m.revoke(r.Context(), t); err != nil {
		m.unavailable(w, r, "revoke session", err)
		return
	}
	// Revoking an unknown session succeeds too: the outcome the caller
	// wants holds either way.
	w.WriteHeader(http.StatusNoContent)
}

func (m *Manager) handleRevokeAll(w http.ResponseWriter, r *http.Request) {
	subject := r.PathValue("subject")
	if subject == "" {
		badRequest(w, r, "subject is required")
		return
	}
	n, err := m.revokeAll(r.Context(), subject)
	if err != nil {
		m.unavailable(w, r, "revoke sessions", err)
		return
	}
	writeJSON(w, http.StatusOK, RevokeAllResponse{Revoked: n})
}

func (m *Manager) handleSelf(w http.ResponseWriter, r *http.Request) {
	t, ok := m.adminToken(w, r)
	if !ok {
		return
	}
	sc, idle, err := m.inspect(r.Context(), t)
	switch {
	case errors.Is(err, errNotFound) || errors.Is(err, errExpired):
		problem.Write(w, r, &problem.Error{
			Status: http.StatusNotFound,
			Kind:   "session-not-found",
			Title:  "Session not found",
			Detail: "No live session matches this token.",
		})
		return
	case err != nil:
		m.unavailable(w, r, "look up session", err)
		return
	}
	writeJSON(w, http.StatusOK, SelfResponse{
		Subject:       sc.Subject,
		Claims:        sc.Claims,
		CreatedAt:     time.UnixMilli(sc.CreatedMs).UTC(),
		ExpiresAt:     time.UnixMilli(sc.ExpiresMs).UTC(),
		IdleExpiresAt: idle.UTC(),
	})
}

// adminToken reads the token from "Authorization: Bearer" or a JSON body
// {"token": "..."}; the admin API ignores the policy's token source, since
// the caller is the app, not a browser.
func (m *Manager) adminToken(w http.ResponseWriter, r *http.Request) (token, bool) {
	raw := ""
	if v := r.Header.Get("Authorization"); v != "" {
		scheme, rest, ok := strings.Cut(v, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			badRequest(w, r, `the Authorization header must be "Bearer <token>"`)
			return token{}, false
		}
		raw = strings.TrimSpace(rest)
	} else if r.ContentLength != 0 && r.Body != nil && r.Method != http.MethodGet {
		var body struct {
			Token string `json:"token"`
		}
		if err := decodeJSON(w, r, &body); err != nil {
			badRequest(w, r, err.Error())
			return token{}, false
		}
		raw = body.Token
	}
	if raw == "" {
		badRequest(w, r, `a token is required, as "Authorization: Bearer <token>" or a JSON body {"token": "..."}`)
		return token{}, false
	}
	t, err := parseToken(raw)
	if err != nil {
		badRequest(w, r, "the token is malformed")
		return token{}, false
	}
	return t, true
}

// inspect reads a session without extending it, with its idle expiry.
func (m *Manager) inspect(ctx context.Context, t token) (*Context, time.Time, error) {
	key := m.keyFor(t)
	var get *redis.StringCmd
	var pttl *redis.DurationCmd
	err := m.rdb.Do(ctx, "inspect", key, func(p *redisconn.Pipe) {
		get, pttl = p.Get(ctx, key), p.PTTL(ctx, key)
	})
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("%w: %w", errStore, err)
	}
	if errors.Is(get.Err(), redis.Nil) {
		return nil, time.Time{}, errNotFound
	}
	sc, err := m.decode(t, key, get.Val())
	if err != nil {
		return nil, time.Time{}, err
	}
	now := m.now()
	if sc.ExpiresMs > 0 && now.UnixMilli() >= sc.ExpiresMs {
		return nil, time.Time{}, errExpired
	}
	return sc, now.Add(pttl.Val()), nil
}

func (m *Manager) unavailable(w http.ResponseWriter, r *http.Request, op string, err error) {
	m.log.ErrorContext(r.Context(), op, "err", err)
	problem.Write(w, r, &problem.Error{
		Status: http.StatusServiceUnavailable,
		Kind:   "session-store-unavailable",
		Title:  "Session store unavailable",
		Detail: "Could not " + op + ": the session store did not answer.",
	})
}

func badRequest(w http.ResponseWriter, r *http.Request, detail string) {
	problem.Write(w, r, &problem.Error{
		Status: http.StatusBadRequest,
		Kind:   "invalid-request",
		Title:  "Invalid request",
		Detail: detail,
	})
}

// decodeJSON reads exactly one JSON object of at most maxBodyBytes with no
// unknown fields, so typos in field names are reported, not ignored.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return fmt.Errorf("body is larger than %d bytes", maxBodyBytes)
		}
		return fmt.Errorf("body is not valid JSON for this endpoint: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("body must hold a single JSON object")
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "encode response", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	// Responses carry tokens and auth contexts.
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}
