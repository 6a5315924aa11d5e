// Package identity carries who a request comes from through the middleware
// chain: the client IP (set by the identity middleware) and the session
// subject (set by the session middleware, read by rate limiting and caching).
package identity

import (
	"context"
	"net/netip"
)

type ctxKey int

const (
	clientIPKey ctxKey = iota
	subjectKey
	subjectPendingKey
)

// WithClientIP returns ctx carrying the client address.
func WithClientIP(ctx context.Context, ip netip.Addr) context.Context {
	return context.WithValue(ctx, clientIPKey, ip)
}

// ClientIP returns the client address, if the identity middleware ran.
func ClientIP(ctx context.Context) (netip.Addr, bool) {
	ip, ok := ctx.Value(clientIPKey).(netip.Addr)
	return ip, ok
}

// WithSubject returns ctx carrying the authenticated session subject.
func WithSubject(ctx context.Context, subject string) context.Context {
	return context.WithValue(ctx, subjectKey, subject)
}

// Subject returns the session subject, if the request carried a valid session.
func Subject(ctx context.Context) (string, bool) {
	s, ok := ctx.Value(subjectKey).(string)
	return s, ok && s != ""
}

// WithSubjectPending returns ctx marked as belonging to a request whose
// subject is not known yet: the session step resolves it only once the
// request's Redis batch has run. Features that plan their Redis calls
// before any feature decides (sidecar/proxy's planner) read it to leave
// subject-dependent calls until the subject is known.
func WithSubjectPending(ctx context.Context) context.Context {
	return context.WithValue(ctx, subjectPendingKey, true)
}

// SubjectPending reports whether the request's subject is still to be
// resolved (WithSubjectPending). It means something only while the request
// is planned; once the session step has run, Subject tells.
func SubjectPending(ctx context.Context) bool {
	v, _ := ctx.Value(subjectPendingKey).(bool)
	return v
}
