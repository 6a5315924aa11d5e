package request

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehouse-dev/gatehouse/sidecar/problem"
)

func TestIsReserved(t *testing.T) {
	for name, want := range map[string]bool{
		"X-Gatehouse-Subject":       true,
		"x-gatehouse-subject":       true,
		"X_Gatehouse_Subject":       true, // CGI/WSGI: HTTP_X_GATEHOUSE_SUBJECT
		"X-Gatehouse_claim-Role":    true,
		"x_GATEHOUSE-client_ip":     true,
		"X-Gatehouse-":              true,
		"X-Gatehouse":               false, // not the prefix
		"X-Gatehousex-Subject":      false,
		"X-Forwarded-For":           false,
		"Gatehouse-Subject":         false,
		"X-Gatehouse\u0130-Subject": false,
	} {
		if got := IsReserved(name); got != want {
			t.Errorf("IsReserved(%q) = %v, want %v", name, got, want)
		}
	}
}

// RFC 9110 §7.6.1: a proxy removes every header named in Connection before
// forwarding. Options the reverse proxy handles itself stay.
func TestDropConnectionOptions(t *testing.T) {
	tests := []struct {
		name string
		in   http.Header
		want http.Header
	}{
		{"keep-alive alone is untouched",
			http.Header{"Connection": {"keep-alive"}, "Keep-Alive": {"timeout=5"}},
			http.Header{"Connection": {"keep-alive"}, "Keep-Alive": {"timeout=5"}}},
		{"named headers removed",
			http.Header{"Connection": {"X-Tenant, x-api-key"}, "X-Tenant": {"a"}, "X-Api-Key": {"k"}, "Accept": {"*/*"}},
			http.Header{"Accept": {"*/*"}}},
		{"identity headers named after the fact cannot be removed later",
			http.Header{"Connection": {"X-Gatehouse-Subject, X-Gatehouse-Claim-Role, X-Gatehouse-Client-Ip"}},
			http.Header{}},
		{"WebSocket upgrade kept",
			http.Header{"Connection": {"keep-alive, Upgrade"}, "Upgrade": {"websocket"}, "Sec-Websocket-Key": {"k"}},
			http.Header{"Connection": {"keep-alive, Upgrade"}, "Upgrade": {"websocket"}, "Sec-Websocket-Key": {"k"}}},
		{"TE kept, others dropped, Connection rewritten",
			http.Header{"Connection": {"TE", "Cookie"}, "Te": {"trailers"}, "Cookie": {"sid=1"}},
			http.Header{"Connection": {"TE"}, "Te": {"trailers"}}},
		{"session token header dropped",
			http.Header{"Connection": {"Authorization"}, "Authorization": {"Bearer t"}},
			http.Header{}},
		{"no Connection header",
			http.Header{"Accept": {"*/*"}},
			http.Header{"Accept": {"*/*"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := tt.in.Clone()
			dropConnectionOptions(h)
			if diff := cmp.Diff(tt.want, h); diff != "" {
				t.Errorf("headers (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNormalizeRewritesTheRequest(t *testing.T) {
	r := normalised(t, http.MethodGet, "/x/../api/%6cogin?b=1", Options{}, http.Header{
		"X_gatehouse_subject": {"admin"},
		"X-Gatehouse-Subject": {"admin"},
		"Connection":          {"X-Keep"},
		"X-Keep":              {"1"},
	})
	if r == nil {
		t.Fatal("refused")
	}
	got := map[string]any{"path": r.URL.Path, "raw": r.URL.RawPath, "uri": r.RequestURI, "query": r.URL.RawQuery, "header": r.Header}
	want := map[string]any{"path": "/api/login", "raw": "/api/login", "uri": "/api/login?b=1", "query": "b=1", "header": http.Header{}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("normalised request (-want +got):\n%s", diff)
	}
}

func TestNormalizeRefusesWithProblem(t *testing.T) {
	var reasons []string
	var reached bool
	h := Normalize(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached = true }), Options{}, func(r string) { reasons = append(reasons, r) })
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/public/..;/admin", nil))
	if reached {
		t.Fatal("a refused request reached the next handler")
	}
	var d problem.Details
	if err := json.Unmarshal(w.Body.Bytes(), &d); err != nil {
		t.Fatal(err)
	}
	if w.Code != http.StatusBadRequest || w.Header().Get("Content-Type") != problem.ContentType || d.Type != "https://gatehouse.dev/problems/ambiguous-path" || d.Detail == "" {
		t.Errorf("response = %d %q %+v", w.Code, w.Header().Get("Content-Type"), d)
	}
	if diff := cmp.Diff([]string{ReasonDotParameter}, reasons); diff != "" {
		t.Errorf("refusals reported (-want +got):\n%s", diff)
	}
}

func TestMatchPathWithParameters(t *testing.T) {
	r := normalised(t, http.MethodGet, "/admin;jsessionid=1/users", pathParameters, nil)
	if r == nil {
		t.Fatal("refused")
	}
	if r.URL.RawPath != "/admin;jsessionid=1/users" || Path(r) != "/admin/users" {
		t.Errorf("app path %q, match path %q", r.URL.RawPath, Path(r))
	}
}
