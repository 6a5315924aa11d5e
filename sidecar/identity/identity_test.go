package identity

import (
	"context"
	"testing"
)

// A subject pending is neither a subject nor its absence: a context marked
// pending has no subject yet, and one with a subject (even after the mark)
// reports it.
func TestSubjectPending(t *testing.T) {
	ctx := context.Background()
	if SubjectPending(ctx) {
		t.Error("a fresh context is pending")
	}
	pending := WithSubjectPending(ctx)
	if !SubjectPending(pending) {
		t.Error("WithSubjectPending: not pending")
	}
	if _, ok := Subject(pending); ok {
		t.Error("a pending context has a subject")
	}
	if s, ok := Subject(WithSubject(pending, "alice")); !ok || s != "alice" {
		t.Errorf("subject after pending: %q %v", s, ok)
	}
}
