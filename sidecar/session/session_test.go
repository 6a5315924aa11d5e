package session

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/gatehouse-dev/gatehouse/internal/redisconn"
	"github.com/gatehouse-dev/gatehouse/internal/redistest"
	"github.com/gatehouse-dev/gatehouse/sidecar/config"
	"github.com/gatehouse-dev/gatehouse/sidecar/identity"
	"github.com/gatehouse-dev/gatehouse/sidecar/request"
)

// backend is a real Redis deployment the session feature runs against.
type backend struct {
	name string
	// conn is what the feature uses; rdb inspects Redis behind its back.
	conn *redisconn.Conn
	rdb  redis.UniversalClient
	// primaries are the addresses holding data, for per-node inspection.
	primaries []string
	// stop takes every node down.
	stop func()
	// mode and addrs open another sidecar's connection.
	mode  redisconn.Mode
	addrs []string
}

// shortTimeouts make "Redis is down" answer quickly in tests.
const shortTimeout = 300 * time.Millisecond

// conn opens the access layer's connection to addrs.
func conn(t testing.TB, mode redisconn.Mode, addrs ...string) *redisconn.Conn {
	t.Helper()
	c, err := redisconn.New(redisconn.Options{Name: "main", Mode: mode, Addrs: addrs,
		DialTimeout: shortTimeout, ReadTimeout: shortTimeout, WriteTimeout: shortTimeout, MaxRetries: 1}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func startStandalone(t *testing.T) *backend {
	s := redistest.StartStandalone(t)
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	return &backend{name: "standalone", conn: conn(t, redisconn.Standalone, s.Addr()), rdb: rdb, primaries: []string{s.Addr()}, stop: func() { _ = s.Kill() },
		mode: redisconn.Standalone, addrs: []string{s.Addr()}}
}

func startCluster(t *testing.T) *backend {
	c := redistest.StartCluster(t)
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	t.Cleanup(func() { _ = rdb.Close() })
	var prim []string
	for _, p := range c.Primaries {
		prim = append(prim, p.Addr())
	}
	return &backend{name: "cluster", conn: conn(t, redisconn.Cluster, c.Addrs()...), rdb: rdb, primaries: prim, mode: redisconn.Cluster, addrs: c.Addrs(), stop: func() {
		for _, n := range c.Nodes() {
			_ = n.Kill()
		}
	}}
}

// harness is a Manager in front of an app that echoes what it received.
type harness struct {
	t     *testing.T
	m     *Manager
	data  http.Handler
	admin *http.ServeMux
	reg   *prometheus.Registry
}

// seen is what the app behind the middleware received.
type seen struct {
	Subject    string `json:"subject"`
	CtxSubject string `json:"ctxSubject"`
	Role       string `json:"role"`
	Tenant     string `json:"tenant"`
}

func newHarness(t *testing.T, b *backend, p config.SessionPolicy) *harness {
	t.Helper()
	p.Redis = "main"
	if p.Namespace == "" {
		p.Namespace, p.Name = "team-a", t.Name()
	}
	reg := prometheus.NewRegistry()
	m, err := New(mustCompile(t, p), map[string]*redisconn.Conn{"main": b.conn}, NewMetrics(reg), nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = m.Close() })
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctxSub, _ := identity.Subject(r.Context())
		_ = json.NewEncoder(w).Encode(seen{
			Subject:    r.Header.Get("X-Gatehouse-Subject"),
			CtxSubject: ctxSub,
			Role:       r.Header.Get("X-Gatehouse-Claim-Role"),
			Tenant:     r.Header.Get("X-Gatehouse-Claim-Tenant"),
		})
	})
	mux := http.NewServeMux()
	m.RegisterAdmin(mux)
	// The normaliser runs first in the sidecar; paths are judged after it.
	data := request.Normalize(m.Middleware(app), request.Options{}, nil)
	return &harness{t: t, m: m, data: data, admin: mux, reg: reg}
}

func (h *harness) do(r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.data.ServeHTTP(w, r)
	return w
}

// get requests path with tok as a bearer token (none when empty).
func (h *harness) get(path, tok string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, path, nil)
	if tok != "" {
		r.Header.Set("Authorization", "Bearer "+tok)
	}
	return h.do(r)
}

func (h *harness) adminDo(method, path, tok string, body any) *httptest.ResponseRecorder {
	h.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			h.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	r := httptest.NewRequest(method, path, rd)
	if tok != "" {
		r.Header.Set("Authorization", "Bearer "+tok)
	}
	w := httptest.NewRecorder()
	h.admin.ServeHTTP(w, r)
	return w
}

// create makes a session through the admin API and returns its token.
func (h *harness) create(subject string, claims map[string]string, ttl time.Duration) string {
	h.t.Helper()
	w := h.adminDo(http.MethodPost, "/v1/sessions", "", CreateRequest{Subject: subject, Claims: claims, TTL: config.Duration(ttl)})
	if w.Code != http.StatusCreated {
		h.t.Fatalf("create session: %d %s", w.Code, w.Body)
	}
	var resp CreateResponse
	if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
		h.t.Fatal(err)
	}
	if resp.Token == "" || resp.ExpiresAt.Before(time.Now()) {
		h.t.Fatalf("create returned %+v", resp)
	}
	return resp.Token
}

func (h *harness) lookups(result string) float64 {
	return testutil.ToFloat64(h.m.m.lookups.WithLabelValues(result))
}

// eventually polls cond every 100ms until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) { //nolint:unparam // the deadline stays a parameter for the next test that needs another
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestRedis runs every Redis behaviour against a standalone server and a
// 3+3 cluster. Independent checks run in parallel; stopping Redis comes last.
func TestRedis(t *testing.T) {
	for _, start := range []func(*testing.T) *backend{startStandalone, startCluster} {
		b := start(t)
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			t.Run("behaviour", func(t *testing.T) {
				for _, tc := range []struct {
					name string
					f    func(*testing.T, *backend)
				}{
					{"SlidingTTL", testSlidingTTL},
					{"FixedTTL", testFixedTTL},
					{"RefreshBelow", testRefreshBelow},
					{"AbsoluteLifetime", testAbsoluteLifetime},
					{"PolicyMaxLifetime", testPolicyMaxLifetime},
					{"ForwardsIdentity", testForwardsIdentity},
					{"OptionalPaths", testOptionalPaths},
					{"RevokeOne", testRevokeOne},
					{"RevokeAll", testRevokeAll},
					{"NothingInClear", testNothingInClear},
					{"BadInput", testBadInput},
					{"AdminAPI", testAdminAPI},
				} {
					t.Run(tc.name, func(t *testing.T) {
						t.Parallel()
						tc.f(t, b)
					})
				}
			})
			t.Run("RedisDown", func(t *testing.T) { testRedisDown(t, b) })
		})
	}
}

func testSlidingTTL(t *testing.T, b *backend) {
	h := newHarness(t, b, config.SessionPolicy{TTL: config.Duration(2 * time.Second), Sliding: true})
	tok := h.create("alice", nil, 0)
	// Use the session every 0.5s for 5s, well past its 2s ttl.
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(500 * time.Millisecond) {
		if w := h.get("/api", tok); w.Code != http.StatusOK {
			t.Fatalf("session in use was rejected: %d %s", w.Code, w.Body)
		}
	}
	// Left alone it must lapse. Watch the key without touching it (EXISTS
	// does not extend a ttl), then use the token once.
	parsed, err := parseToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	key := h.m.sessionKey(parsed)
	if b.rdb.Exists(context.Background(), key).Val() != 1 {
		t.Fatal("session key vanished while in use")
	}
	eventually(t, 10*time.Second, "idle session expires", func() bool {
		return b.rdb.Exists(context.Background(), key).Val() == 0
	})
	if w := h.get("/api", tok); w.Code != http.StatusUnauthorized {
		t.Errorf("expired session: %d, want 401", w.Code)
	}
}

func testFixedTTL(t *testing.T, b *backend) {
	h := newHarness(t, b, config.SessionPolicy{TTL: config.Duration(2 * time.Second), Sliding: false})
	created := time.Now()
	tok := h.create("alice", nil, 0)
	// Used continuously, the session still ends; never before its ttl.
	var expired time.Time
	eventually(t, 10*time.Second, "session expires despite use", func() bool {
		if h.get("/api", tok).Code == http.StatusUnauthorized {
			expired = time.Now()
			return true
		}
		return false
	})
	if lived := expired.Sub(created); lived < 2*time.Second {
		t.Errorf("session ended after %s, before its 2s ttl", lived)
	}
}

func testRefreshBelow(t *testing.T, b *backend) {
	ctx := context.Background()
	h := newHarness(t, b, config.SessionPolicy{TTL: config.Duration(time.Minute), Sliding: true, RefreshBelow: config.Duration(20 * time.Second)})
	tok := h.create("alice", nil, 0)
	parsed, err := parseToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	key := h.m.sessionKey(parsed)
	// Plenty left: a request must not write.
	if err := b.rdb.PExpire(ctx, key, 40*time.Second).Err(); err != nil {
		t.Fatal(err)
	}
	if w := h.get("/api", tok); w.Code != http.StatusOK {
		t.Fatalf("lookup: %d %s", w.Code, w.Body)
	}
	if left := b.rdb.PTTL(ctx, key).Val(); left > 40*time.Second {
		t.Errorf("ttl extended to %s although more than refreshBelow remained", left)
	}
	// Little left: the request extends to the full ttl. Another sidecar
	// (this one's tier believes the 40s it read) reads the 5s from Redis.
	if err := b.rdb.PExpire(ctx, key, 5*time.Second).Err(); err != nil {
		t.Fatal(err)
	}
	h = newHarness(t, b, config.SessionPolicy{TTL: config.Duration(time.Minute), Sliding: true, RefreshBelow: config.Duration(20 * time.Second)})
	if w := h.get("/api", tok); w.Code != http.StatusOK {
		t.Fatalf("lookup: %d %s", w.Code, w.Body)
	}
	if left := b.rdb.PTTL(ctx, key).Val(); left <= 40*time.Second {
		t.Errorf("ttl is %s after a lookup below refreshBelow, want it extended to about 1m", left)
	}
}

// testAbsoluteLifetime: a sliding session in constant use still ends at the
// lifetime given at creation, and its key is removed then.
func testAbsoluteLifetime(t *testing.T, b *backend) {
	h := newHarness(t, b, config.SessionPolicy{TTL: config.Duration(time.Minute), Sliding: true})
	tok := h.create("grace", nil, time.Second)
	parsed, err := parseToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "session in use ends at its absolute lifetime", func() bool {
		return h.get("/api", tok).Code == http.StatusUnauthorized
	})
	if got := h.lookups(resultExpired); got != 1 {
		t.Errorf("expired lookups = %v, want 1", got)
	}
	if n := b.rdb.Exists(context.Background(), h.m.keyFor(parsed)).Val(); n != 0 {
		t.Error("the key of a session past its lifetime was left in Redis")
	}
}

// testPolicyMaxLifetime: without a lifetime of its own, a sliding session
// in constant use ends at the policy's maxLifetime.
func testPolicyMaxLifetime(t *testing.T, b *backend) {
	h := newHarness(t, b, config.SessionPolicy{TTL: config.Duration(time.Second), Sliding: true, MaxLifetime: config.Duration(1500 * time.Millisecond)})
	tok := h.create("heidi", nil, 0)
	if w := h.get("/api", tok); w.Code != http.StatusOK {
		t.Fatalf("fresh session: %d %s", w.Code, w.Body)
	}
	eventually(t, 10*time.Second, "session in use ends at the policy maxLifetime", func() bool {
		return h.get("/api", tok).Code == http.StatusUnauthorized
	})
}

func testForwardsIdentity(t *testing.T, b *backend) {
	h := newHarness(t, b, config.SessionPolicy{TTL: config.Duration(time.Minute), Sliding: true, ForwardClaims: []string{"role"}, PublicPaths: []string{"/public"}})
	tok := h.create("alice@example.com", map[string]string{"role": "admin", "tenant": "not-forwarded"}, 0)

	r := httptest.NewRequest(http.MethodGet, "/api/me", nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	r.Header.Set("X-Gatehouse-Subject", "mallory")
	r.Header.Set("X-Gatehouse-Claim-Role", "root")
	w := h.do(r)
	if w.Code != http.StatusOK {
		t.Fatalf("valid session: %d %s", w.Code, w.Body)
	}
	var got seen
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	want := seen{Subject: "alice@example.com", CtxSubject: "alice@example.com", Role: "admin"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("app saw (-want +got):\n%s", diff)
	}

	// Forged identity without a session never reaches the app, not even on public paths.
	r = httptest.NewRequest(http.MethodGet, "/public/x", nil)
	r.Header.Set("X-Gatehouse-Subject", "mallory")
	w = h.do(r)
	got = seen{}
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatalf("public path: %d %s", w.Code, w.Body)
	}
	if diff := cmp.Diff(seen{}, got); diff != "" || w.Code != http.StatusOK {
		t.Errorf("public path: status %d, app saw (-want +got):\n%s", w.Code, diff)
	}

	// A dot-segment detour through a public prefix is judged by its target.
	if w := h.get("/public/../api/me", ""); w.Code != http.StatusUnauthorized {
		t.Errorf("/public/../api/me without a session: %d, want 401", w.Code)
	}
	if h.lookups(resultValid) != 1 {
		t.Errorf("valid lookups = %v, want 1", h.lookups(resultValid))
	}
}

// testOptionalPaths: outside requireFor a session is used when valid and
// ignored otherwise.
func testOptionalPaths(t *testing.T, b *backend) {
	h := newHarness(t, b, config.SessionPolicy{TTL: config.Duration(time.Minute), RequireFor: []string{"/api"}})
	tok := h.create("frank", nil, 0)
	subjectSeen := func(w *httptest.ResponseRecorder) string {
		t.Helper()
		var got seen
		if w.Code != http.StatusOK {
			t.Fatalf("optional path: %d %s", w.Code, w.Body)
		}
		if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
			t.Fatal(err)
		}
		return got.Subject
	}
	if s := subjectSeen(h.get("/home", tok)); s != "frank" {
		t.Errorf("valid token on an optional path: app saw subject %q, want frank", s)
	}
	if s := subjectSeen(h.get("/home", "")); s != "" {
		t.Errorf("no token on an optional path: app saw subject %q", s)
	}
	if s := subjectSeen(h.get("/home", validToken.String())); s != "" {
		t.Errorf("unknown token on an optional path: app saw subject %q", s)
	}
	if w := h.get("/api/x", ""); w.Code != http.StatusUnauthorized {
		t.Errorf("required path without a token: %d, want 401", w.Code)
	}
	for result, want := range map[string]float64{resultValid: 1, resultInvalid: 1, resultMissing: 1} {
		if got := h.lookups(result); got != want {
			t.Errorf("lookups{result=%q} = %v, want %v", result, got, want)
		}
	}
}

func testRevokeOne(t *testing.T, b *backend) {
	h := newHarness(t, b, config.SessionPolicy{TTL: config.Duration(time.Minute), Sliding: true})
	tok := h.create("alice", nil, 0)
	other := h.create("alice", nil, 0)
	if w := h.get("/", tok); w.Code != http.StatusOK {
		t.Fatalf("before revoke: %d", w.Code)
	}
	// Knowing the id is not enough to revoke: the secret must match.
	if w := h.adminDo(http.MethodDelete, "/v1/sessions", forgeSecret(t, tok), nil); w.Code != http.StatusNoContent {
		t.Fatalf("revoke with a forged secret: %d %s", w.Code, w.Body)
	}
	if w := h.get("/", tok); w.Code != http.StatusOK {
		t.Fatalf("a token with the same id but another secret revoked the session: %d", w.Code)
	}
	if w := h.adminDo(http.MethodDelete, "/v1/sessions", tok, nil); w.Code != http.StatusNoContent {
		t.Fatalf("revoke: %d %s", w.Code, w.Body)
	}
	if w := h.get("/", tok); w.Code != http.StatusUnauthorized {
		t.Errorf("revoked session: %d, want 401", w.Code)
	}
	if w := h.get("/", other); w.Code != http.StatusOK {
		t.Errorf("the subject's other session: %d, want 200", w.Code)
	}
	// The JSON body form works too, and revoking again is not an error.
	if w := h.adminDo(http.MethodDelete, "/v1/sessions", "", map[string]string{"token": other}); w.Code != http.StatusNoContent {
		t.Fatalf("revoke by body: %d %s", w.Code, w.Body)
	}
	if w := h.get("/", other); w.Code != http.StatusUnauthorized {
		t.Errorf("session revoked by body: %d, want 401", w.Code)
	}
	if w := h.adminDo(http.MethodDelete, "/v1/sessions", tok, nil); w.Code != http.StatusNoContent {
		t.Errorf("second revoke: %d %s", w.Code, w.Body)
	}
	// Nothing of alice is left in her index.
	if n := b.rdb.ZCard(context.Background(), h.m.indexKey("alice")).Val(); n != 0 {
		t.Errorf("index still holds %d entries", n)
	}
}

func testRevokeAll(t *testing.T, b *backend) {
	ctx := context.Background()
	h := newHarness(t, b, config.SessionPolicy{TTL: config.Duration(time.Minute), Sliding: true})
	const subject = "alice/with slash@example.com"
	var toks []string
	for range 20 {
		toks = append(toks, h.create(subject, nil, 0))
	}
	bob := h.create("bob", nil, 0)
	// Every session of a subject shares the slot of its index, so revoking
	// them is one single-slot step; subjects spread over the slots.
	idxSlot := b.rdb.ClusterKeySlot(ctx, h.m.indexKey(subject))
	for i, tok := range toks {
		parsed, err := parseToken(tok)
		if err != nil {
			t.Fatal(err)
		}
		if b.name == "cluster" {
			if got := b.rdb.ClusterKeySlot(ctx, h.m.keyFor(parsed)).Val(); got != idxSlot.Val() {
				t.Fatalf("session %d in slot %d, its index in %d", i, got, idxSlot.Val())
			}
		}
	}
	for i, tok := range toks {
		if w := h.get("/", tok); w.Code != http.StatusOK {
			t.Fatalf("session %d before revoke-all: %d", i, w.Code)
		}
	}
	w := h.adminDo(http.MethodDelete, "/v1/subjects/"+url.PathEscape(subject)+"/sessions", "", nil)
	if w.Code != http.StatusOK {
		t.Fatalf("revoke-all: %d %s", w.Code, w.Body)
	}
	var resp RevokeAllResponse
	if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
		t.Fatal(err)
	}
	if resp.Revoked != 20 {
		t.Errorf("revoked = %d, want 20", resp.Revoked)
	}
	for i, tok := range toks {
		if w := h.get("/", tok); w.Code != http.StatusUnauthorized {
			t.Errorf("session %d after revoke-all: %d, want 401", i, w.Code)
		}
	}
	if w := h.get("/", bob); w.Code != http.StatusOK {
		t.Errorf("another subject's session after revoke-all: %d, want 200", w.Code)
	}
	if n := b.rdb.Exists(ctx, h.m.indexKey(subject)).Val(); n != 0 {
		t.Errorf("emptied index still exists")
	}
	if got := testutil.ToFloat64(h.m.m.revoked); got != 20 {
		t.Errorf("revoked counter = %v, want 20", got)
	}
}

func testNothingInClear(t *testing.T, b *backend) {
	ctx := context.Background()
	h := newHarness(t, b, config.SessionPolicy{PolicyMeta: config.PolicyMeta{Namespace: "clear", Name: "check"}, TTL: config.Duration(time.Minute), Sliding: true, ForwardClaims: []string{"role"}})
	const subject = "carol.secretsubject@example.com"
	const claim = "claimvalue-must-not-leak"
	var needles []string
	for range 5 {
		tok := h.create(subject, map[string]string{"role": claim}, 0)
		if w := h.get("/", tok); w.Code != http.StatusOK {
			t.Fatalf("lookup: %d", w.Code)
		}
		id, secret, _ := strings.Cut(strings.TrimPrefix(tok, tokenPrefix), ".")
		rawID, _ := base64.RawURLEncoding.DecodeString(id)
		rawSecret, _ := base64.RawURLEncoding.DecodeString(secret)
		needles = append(needles, tok, id, secret, string(rawID), string(rawSecret), fmt.Sprintf("%x", rawID), fmt.Sprintf("%x", rawSecret))
	}
	needles = append(needles, subject, "carol", claim, base64.StdEncoding.EncodeToString([]byte(subject)))

	var haystack []string
	scanned := 0
	for _, addr := range b.primaries {
		c := redis.NewClient(&redis.Options{Addr: addr})
		defer c.Close()
		iter := c.Scan(ctx, 0, "*", 100).Iterator()
		for iter.Next(ctx) {
			key := iter.Val()
			scanned++
			haystack = append(haystack, key)
			dump, err := c.Dump(ctx, key).Result()
			if errors.Is(err, redis.Nil) {
				// Other subtests share the server and revoke or expire
				// their sessions meanwhile; a vanished key holds nothing.
				continue
			}
			if err != nil {
				t.Fatalf("DUMP %s: %v", key, err)
			}
			haystack = append(haystack, dump)
			switch typ := c.Type(ctx, key).Val(); typ {
			case "string":
				haystack = append(haystack, c.Get(ctx, key).Val())
			case "zset":
				haystack = append(haystack, c.ZRange(ctx, key, 0, -1).Val()...)
			case "none":
				// Gone since the DUMP, whose bytes were searched already.
			default:
				t.Errorf("unexpected key type %q for %s", typ, key)
			}
		}
		if err := iter.Err(); err != nil {
			t.Fatal(err)
		}
	}
	if scanned < 6 {
		t.Fatalf("scanned %d keys, want the 5 sessions and the index", scanned)
	}
	for _, hay := range haystack {
		for _, n := range needles {
			if strings.Contains(hay, n) {
				t.Errorf("Redis holds %q in clear (in %q)", n, hay)
			}
		}
	}
}

func testBadInput(t *testing.T, b *backend) {
	h := newHarness(t, b, config.SessionPolicy{TTL: config.Duration(time.Minute), Token: config.TokenSource{Header: "Authorization", Cookie: "sid"}})
	good := h.create("alice", nil, 0)
	forged := forgeSecret(t, good)
	cases := map[string]func(r *http.Request){
		"malformed token":      func(r *http.Request) { r.Header.Set("Authorization", "Bearer not-a-token") },
		"empty bearer":         func(r *http.Request) { r.Header.Set("Authorization", "Bearer ") },
		"wrong scheme":         func(r *http.Request) { r.Header.Set("Authorization", "Basic "+good) },
		"oversized header":     func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+strings.Repeat("gh1.", 64<<10)) },
		"control characters":   func(r *http.Request) { r.Header.Set("Authorization", "Bearer gh1.\x00\x01\x02") },
		"unknown token":        func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+validToken.String()) },
		"right id, bad secret": func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+forged) },
		"garbage cookie":       func(r *http.Request) { r.Header.Set("Cookie", "sid=\x7f\xff;;==;sid") },
		"garbage cookie value": func(r *http.Request) { r.Header.Set("Cookie", "sid="+strings.Repeat("%", 5000)) },
		"no token":             func(r *http.Request) {},
	}
	for name, set := range cases {
		t.Run(name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/api", nil)
			set(r)
			w := h.do(r)
			if w.Code != http.StatusUnauthorized {
				t.Fatalf("status %d, want 401: %s", w.Code, w.Body)
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("Content-Type %q", ct)
			}
			if wa := w.Header().Get("WWW-Authenticate"); !strings.HasPrefix(wa, `Bearer realm="gatehouse"`) {
				t.Errorf("WWW-Authenticate %q", wa)
			}
			if name != "no token" && !strings.Contains(w.Header().Get("WWW-Authenticate"), `error="invalid_token"`) && name != "garbage cookie" {
				t.Errorf("a presented token must be answered with invalid_token: %q", w.Header().Get("WWW-Authenticate"))
			}
		})
	}
	// The good token still works through the cookie.
	r := httptest.NewRequest(http.MethodGet, "/api", nil)
	r.AddCookie(&http.Cookie{Name: "sid", Value: good})
	if w := h.do(r); w.Code != http.StatusOK {
		t.Errorf("cookie token: %d %s", w.Code, w.Body)
	}
}

func testAdminAPI(t *testing.T, b *backend) {
	h := newHarness(t, b, config.SessionPolicy{TTL: config.Duration(time.Minute), Sliding: true})
	tok := h.create("dave", map[string]string{"role": "ops"}, time.Hour)
	w := h.adminDo(http.MethodGet, "/v1/sessions/self", tok, nil)
	if w.Code != http.StatusOK {
		t.Fatalf("self: %d %s", w.Code, w.Body)
	}
	var self SelfResponse
	if err := json.Unmarshal(w.Body.Bytes(), &self); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(SelfResponse{Subject: "dave", Claims: map[string]string{"role": "ops"}}, self,
		cmpIgnoreTimes); diff != "" {
		t.Errorf("self (-want +got):\n%s", diff)
	}
	if life := self.ExpiresAt.Sub(self.CreatedAt); life != time.Hour {
		t.Errorf("absolute lifetime %s, want the requested 1h", life)
	}
	if self.IdleExpiresAt.After(self.CreatedAt.Add(time.Minute + time.Second)) {
		t.Errorf("idle expiry %s beyond the policy ttl after creation %s", self.IdleExpiresAt, self.CreatedAt)
	}

	bad := []struct {
		name   string
		method string
		path   string
		tok    string
		body   any
		want   int
	}{
		{"no subject", http.MethodPost, "/v1/sessions", "", map[string]any{"claims": map[string]string{"a": "b"}}, 400},
		{"unknown field", http.MethodPost, "/v1/sessions", "", map[string]any{"subject": "x", "subjet": "y"}, 400},
		{"negative ttl", http.MethodPost, "/v1/sessions", "", map[string]any{"subject": "x", "ttl": "-1s"}, 400},
		{"ttl not a duration", http.MethodPost, "/v1/sessions", "", map[string]any{"subject": "x", "ttl": 30}, 400},
		{"subject with newline", http.MethodPost, "/v1/sessions", "", map[string]any{"subject": "x\r\nX-Evil: 1"}, 400},
		{"claim name not a header token", http.MethodPost, "/v1/sessions", "", map[string]any{"subject": "x", "claims": map[string]string{"a b": "c"}}, 400},
		{"revoke without token", http.MethodDelete, "/v1/sessions", "", nil, 400},
		{"revoke malformed token", http.MethodDelete, "/v1/sessions", "garbage", nil, 400},
		{"self unknown token", http.MethodGet, "/v1/sessions/self", validToken.String(), nil, 404},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			w := h.adminDo(tc.method, tc.path, tc.tok, tc.body)
			if w.Code != tc.want {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.want, w.Body)
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("Content-Type %q, want problem+json", ct)
			}
		})
	}
}

// forgeSecret returns tok with the same id and a different secret.
func forgeSecret(t *testing.T, tok string) string {
	t.Helper()
	p, err := parseToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	p.secret[0] ^= 1
	return p.String()
}

var cmpIgnoreTimes = cmp.Comparer(func(a, b time.Time) bool { return true })

func testRedisDown(t *testing.T, b *backend) {
	h := newHarness(t, b, config.SessionPolicy{TTL: config.Duration(time.Minute), Sliding: true, PublicPaths: []string{"/public"}})
	tok := h.create("erin", nil, 0)
	if w := h.get("/api", tok); w.Code != http.StatusOK {
		t.Fatalf("before stop: %d", w.Code)
	}
	b.stop()
	// The tier serves what it resolved until its revocation subscription
	// is lost or silent for its lease (750ms); then the failure mode.
	var w *httptest.ResponseRecorder
	eventually(t, 10*time.Second, "protected path answers once the tier lapses", func() bool {
		w = h.get("/api", tok)
		return w.Code != http.StatusOK
	})
	if w.Code != http.StatusServiceUnavailable {
		t.Fatalf("protected path with Redis down: %d %s, want 503", w.Code, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type %q", ct)
	}
	if w := h.get("/public/x", ""); w.Code != http.StatusOK {
		t.Errorf("public path with Redis down: %d, want 200", w.Code)
	}
	// Without a token there is nothing to look up: still a plain 401.
	if w := h.get("/api", ""); w.Code != http.StatusUnauthorized {
		t.Errorf("no token with Redis down: %d, want 401", w.Code)
	}
	if w := h.adminDo(http.MethodPost, "/v1/sessions", "", CreateRequest{Subject: "x"}); w.Code != http.StatusServiceUnavailable {
		t.Errorf("create with Redis down: %d, want 503", w.Code)
	}
	if h.lookups(resultError) < 1 {
		t.Errorf("error lookups not counted")
	}
}
