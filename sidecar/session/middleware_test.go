package session

import (
	"net/http/httptest"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-dev/gatehouse/internal/redisconn"
	"github.com/gatehouse-dev/gatehouse/sidecar/config"
)

// newOffline builds a Manager whose client points nowhere; extraction and
// configuration need no Redis.
func newOffline(t *testing.T, p config.SessionPolicy) (*Manager, error) {
	t.Helper()
	p.Redis = "main"
	return New(p, map[string]*redisconn.Conn{"main": conn(t, redisconn.Standalone, "127.0.0.1:1")}, NewMetrics(prometheus.NewRegistry()), nil)
}

func TestExtract(t *testing.T) {
	tok := validToken.String()
	tests := []struct {
		name        string
		src         config.TokenSource
		header      map[string]string
		cookie      string
		want        string
		wantPresent bool
	}{
		{"default bearer", config.TokenSource{}, map[string]string{"Authorization": "Bearer " + tok}, "", tok, true},
		{"scheme is case-insensitive", config.TokenSource{}, map[string]string{"Authorization": "bearer " + tok}, "", tok, true},
		{"wrong scheme is present but empty", config.TokenSource{}, map[string]string{"Authorization": "Basic " + tok}, "", "", true},
		{"no header", config.TokenSource{}, nil, "", "", false},
		{"custom header bare token", config.TokenSource{Header: "X-Session"}, map[string]string{"X-Session": tok}, "", tok, true},
		{"cookie only", config.TokenSource{Cookie: "sid"}, map[string]string{"Authorization": "Bearer ignored"}, tok, tok, true},
		{"header wins over cookie", config.TokenSource{Header: "Authorization", Cookie: "sid"}, map[string]string{"Authorization": "Bearer " + tok}, "other", tok, true},
		{"cookie fallback", config.TokenSource{Header: "Authorization", Cookie: "sid"}, nil, tok, tok, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := newOffline(t, config.SessionPolicy{Token: tc.src})
			if err != nil {
				t.Fatal(err)
			}
			r := httptest.NewRequest("GET", "/", nil)
			for k, v := range tc.header {
				r.Header.Set(k, v)
			}
			if tc.cookie != "" {
				r.Header.Set("Cookie", "sid="+tc.cookie)
			}
			got, present := m.extract(r)
			if diff := cmp.Diff(tc.want, got); diff != "" || present != tc.wantPresent {
				t.Errorf("extract = %q, %v; want %q, %v (-want +got):\n%s", got, present, tc.want, tc.wantPresent, diff)
			}
		})
	}
}

func TestNewRejectsBadPolicy(t *testing.T) {
	tests := []struct {
		name string
		p    config.SessionPolicy
	}{
		{"negative ttl", config.SessionPolicy{TTL: config.Duration(-1)}},
		{"refreshBelow without sliding", config.SessionPolicy{RefreshBelow: config.Duration(1e9)}},
		{"refreshBelow not below ttl", config.SessionPolicy{Sliding: true, TTL: config.Duration(1e9), RefreshBelow: config.Duration(1e9)}},
		{"claim not a header token", config.SessionPolicy{ForwardClaims: []string{"bad name"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := newOffline(t, tc.p); err == nil {
				t.Error("New accepted an invalid policy")
			}
		})
	}
	t.Run("unknown redis connection", func(t *testing.T) {
		_, err := New(config.SessionPolicy{PolicyMeta: config.PolicyMeta{Redis: "nope"}}, nil, NewMetrics(prometheus.NewRegistry()), nil)
		if err == nil {
			t.Error("New accepted a policy naming an unknown connection")
		}
	})
}
