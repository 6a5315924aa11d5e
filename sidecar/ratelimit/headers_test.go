package ratelimit

import (
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehouse-dev/gatehouse/sidecar/config"
)

// TestDraftHeaders checks the fields of draft-ietf-httpapi-ratelimit-headers
// (the default form): RateLimit-Policy lists every enforced rule of the
// request as a String member with its quota q and window w in seconds;
// RateLimit lists the same members with what remains (r) and the seconds
// until it comes back (t), counting down to a 429 that still carries them.
// A Shadow rule is not advertised.
func TestDraftHeaders(t *testing.T) {
	_, c := startRedis(t)
	fixed := newRule("fixed", config.FixedWindow, 3, time.Minute)
	bucket := newRule("bucket", config.TokenBucket, 10, time.Minute) // burst 10, full again after 60s
	shadow := newRule("trial", config.SlidingWindow, 1, time.Minute)
	shadow.Mode = config.Shadow
	p := testPolicy("ns", "api", "main", fixed, bucket, shadow)
	h := newLimiter(t, one(t, c), nil, p).Middleware(okHandler)
	for i := range 4 {
		resp := serve(h, req("GET", "/", "10.70.0.1", ""))
		wantStatus := http.StatusOK
		if i == 3 {
			wantStatus = http.StatusTooManyRequests
		}
		if resp.StatusCode != wantStatus {
			t.Fatalf("request %d: status %d, want %d", i, resp.StatusCode, wantStatus)
		}
		policy := sfList(t, resp.Header.Get("RateLimit-Policy"))
		want := map[string]map[string]int64{
			"api/fixed":  {"q": 3, "w": 60},
			"api/bucket": {"q": 10, "w": 60},
		}
		if diff := cmp.Diff(want, policy); diff != "" {
			t.Errorf("request %d: RateLimit-Policy (-want +got):\n%s", i, diff)
		}
		state := sfList(t, resp.Header.Get("RateLimit"))
		if got, want := state["api/fixed"]["r"], max(int64(2-i), 0); got != want {
			t.Errorf("request %d: fixed r = %d, want %d", i, got, want)
		}
		if tt := state["api/fixed"]["t"]; tt < 1 || tt > 60 {
			t.Errorf("request %d: fixed t = %d, want within the window", i, tt)
		}
		if i < 3 {
			if got := state["api/bucket"]["r"]; got != int64(9-i) {
				t.Errorf("request %d: bucket r = %d, want %d", i, got, 9-i)
			}
		}
		if _, ok := state["api/trial"]; ok {
			t.Errorf("request %d: the Shadow rule is advertised: %q", i, resp.Header.Get("RateLimit"))
		}
		for _, legacy := range []string{"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"} {
			if v := resp.Header.Get(legacy); v != "" {
				t.Errorf("request %d: Draft form sent %s: %q", i, legacy, v)
			}
		}
	}
}

// TestBothHeaderForms: Both sends the draft's fields and, for clients of
// earlier drafts, RateLimit-Limit, -Remaining and -Reset of the most
// restrictive rule; the RateLimit-Policy is the draft's. (The policy
// identifier is a quoted string; TestCompileDraftAndLease tests its
// escaping, as Compile admits no name that needs it.)
func TestBothHeaderForms(t *testing.T) {
	_, c := startRedis(t)
	p := testPolicy("ns", "both", "main", newRule("per.client_v1", config.FixedWindow, 5, time.Minute))
	p.Headers = config.HeadersBoth
	resp := serve(newLimiter(t, one(t, c), nil, p).Middleware(okHandler), req("GET", "/", "10.70.0.2", ""))
	if got := resp.Header.Get("RateLimit-Policy"); got != `"both/per.client_v1";q=5;w=60` {
		t.Errorf("RateLimit-Policy = %q", got)
	}
	if got := remaining(t, resp, "both/per.client_v1"); got != 4 {
		t.Errorf("RateLimit r = %d, want 4", got)
	}
	if got := headerInt(t, resp, "RateLimit-Remaining"); got != 4 {
		t.Errorf("RateLimit-Remaining = %d, want 4", got)
	}
	if got := resp.Header.Get("RateLimit-Limit"); got != "5" {
		t.Errorf("RateLimit-Limit = %q, want 5", got)
	}
	if reset := headerInt(t, resp, "RateLimit-Reset"); reset < 1 || reset > 60 {
		t.Errorf("RateLimit-Reset = %d", reset)
	}
}
