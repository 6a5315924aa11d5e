package config

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// FieldError is one problem with the document, at a path such as
// "rateLimits[0].rules[1].window".
type FieldError struct {
	Path    string
	Message string
}

func (e FieldError) String() string {
	if e.Path == "" {
		return e.Message
	}
	return e.Path + ": " + e.Message
}

// FieldErrors is every problem found in a document or a section of it.
// Reporting all of them at once spares the operator (and a human editing a
// file) a fix-one-retry loop.
//
// Every check of the document reports into one: Validate for the document's
// own structure, and each feature's Compile for its section, with paths
// relative to the section; the document compile (sidecar/gate) prefixes
// them with the section's place. The checks several sections share are
// methods here, so that they are worded the same everywhere.
type FieldErrors []FieldError

func (es FieldErrors) Error() string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.String()
	}
	return strings.Join(parts, "; ")
}

// Err returns es as an error, or nil when it holds no problem. Returning a
// nil FieldErrors as an error would be a non-nil error.
func (es FieldErrors) Err() error {
	if len(es) == 0 {
		return nil
	}
	return es
}

// Problems lists the problems of err as "path: message" lines: each of its
// FieldErrors, or err itself when it carries none; nil for nil.
func Problems(err error) []string {
	if err == nil {
		return nil
	}
	var fe FieldErrors
	if !errors.As(err, &fe) {
		return []string{err.Error()}
	}
	out := make([]string, len(fe))
	for i, e := range fe {
		out[i] = e.String()
	}
	return out
}

// Add records a problem at path.
func (es *FieldErrors) Add(path, msg string) {
	*es = append(*es, FieldError{Path: path, Message: msg})
}

// Merge records the problems of err, a part checked on its own, under
// prefix: "match" and "pathPrefix" make "match.pathPrefix". An error that
// is not FieldErrors becomes one problem at prefix.
func (es *FieldErrors) Merge(prefix string, err error) {
	if err == nil {
		return
	}
	var fe FieldErrors
	if !errors.As(err, &fe) {
		es.Add(prefix, err.Error())
		return
	}
	for _, e := range fe {
		es.Add(JoinPath(prefix, e.Path), e.Message)
	}
}

// JoinPath appends path to prefix: "rules[0]" and "window" make
// "rules[0].window", "rules" and "[0]" make "rules[0]".
func JoinPath(prefix, path string) string {
	switch {
	case prefix == "":
		return path
	case path == "":
		return prefix
	case path[0] == '[':
		return prefix + path
	}
	return prefix + "." + path
}

var (
	// nameRE bounds policy and rule names: they become parts of Redis keys
	// and metric labels. It accepts Kubernetes object names and more.
	nameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$`)
	// tokenRE is an RFC 9110 token (§5.6.2): header names, methods, auth
	// schemes and cookie names.
	tokenRE = regexp.MustCompile("^[!#$%&'*+\\-.^_`|~0-9A-Za-z]+$")
)

// IsToken reports whether s is an RFC 9110 token, the syntax of a header
// name, a method, an auth scheme and a cookie name.
func IsToken(s string) bool { return tokenRE.MatchString(s) }

// Name checks a policy or rule name.
func (es *FieldErrors) Name(path, name string) {
	switch {
	case name == "":
		es.Add(path, "required")
	case !nameRE.MatchString(name):
		es.Add(path, fmt.Sprintf("%q must be alphanumeric with '.', '_' or '-' inside, at most 253 characters", name))
	}
}

// Header checks a header name.
func (es *FieldErrors) Header(path, name string) {
	if !IsToken(name) {
		es.Add(path, fmt.Sprintf("%q is not a valid header name", name))
	}
}

// Positive checks a duration that must be above zero.
func (es *FieldErrors) Positive(path string, d Duration) {
	if d <= 0 {
		es.Add(path, "must be positive")
	}
}

// NonNegative checks a duration that may be zero.
func (es *FieldErrors) NonNegative(path string, d Duration) {
	if d < 0 {
		es.Add(path, "must not be negative")
	}
}

// Unique checks that name was not seen before in a list, and records it.
func (es *FieldErrors) Unique(path, name, what string, seen map[string]bool) {
	if name != "" && seen[name] {
		es.Add(path, fmt.Sprintf("duplicate %s %q", what, name))
	}
	seen[name] = true
}
