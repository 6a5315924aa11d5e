package ratelimit

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/redisconn"
	"github.com/gatehouse-dev/gatehouse/sidecar/config"
	"github.com/gatehouse-dev/gatehouse/sidecar/identity"
	"github.com/gatehouse-dev/gatehouse/sidecar/request"
)

// slotsPerWindow is how many slots a SlidingWindow window is divided into.
// More slots track the true window more closely (the effective window is at
// most 1/slotsPerWindow longer than configured) at the cost of a larger hash.
const slotsPerWindow = 20

// rule is a config.RateLimitRule compiled for the request path: defaults
// applied, matching normalised, script arguments and headers precomputed.
type rule struct {
	policy string // "namespace/name", the metrics label
	name   string
	conn   string // name of the Redis connection

	algorithm  config.Algorithm
	limit      int64
	burst      int64
	window     time.Duration
	shadow     bool
	failClosed bool

	match     *request.Matcher
	key       config.RateLimitKey
	keyHeader string // canonical form of key.Header

	keyPrefix string // "rl:{<ns>/<policy>/<rule>/"
	shape     string // algorithm, window and quota, hashed into every key
	// script and args run a strict SlidingWindow or TokenBucket decision,
	// or a lease; a strict FixedWindow needs no script.
	script *redisconn.Script
	args   []any

	// leased rules take slices of the quota (lease.go). leaseLife bounds
	// how long a TokenBucket slice may be spent (FixedWindow: until the
	// window ends).
	leased    bool
	leaseLife time.Duration

	headers      config.HeaderForm
	limitHeader  string // legacy RateLimit-Limit value
	policyHeader string // legacy RateLimit-Policy value
	draftPolicy  string // RateLimit-Policy item of the current draft
	draftName    string // the item's policy identifier, quoted

	fallbackRate  float64 // tokens per second for the in-process fallback
	fallbackBurst float64
}

// compile validates r of policy p, reporting every problem at once.
func compile(p config.RateLimitPolicy, r config.RateLimitRule) (*rule, error) {
	var errs []error
	c := &rule{
		headers:   p.Headers,
		leased:    r.Quota == config.QuotaLeased,
		policy:    p.Namespace + "/" + p.Name,
		name:      r.Name,
		conn:      p.Redis,
		algorithm: r.Algorithm,
		limit:     r.Limit,
		burst:     r.Burst,
		window:    r.Window.D(),
		key:       r.Key,
		keyHeader: http.CanonicalHeaderKey(r.Key.Header),
	}
	if r.Name == "" {
		errs = append(errs, errors.New("name is required"))
	}
	var err error
	if c.match, err = request.Compile(r.Match, nil); err != nil {
		errs = append(errs, fmt.Errorf("match: %w", err))
	}
	if c.limit <= 0 {
		errs = append(errs, fmt.Errorf("limit must be positive, got %d", c.limit))
	}
	if c.window < time.Millisecond || c.window%time.Millisecond != 0 {
		errs = append(errs, fmt.Errorf("window must be a positive whole number of milliseconds, got %s", c.window))
	}
	switch r.Mode {
	case "", config.Enforce:
	case config.Shadow:
		c.shadow = true
	default:
		errs = append(errs, fmt.Errorf("unknown mode %q", r.Mode))
	}
	switch r.FailureMode {
	case "", config.FailOpen:
	case config.FailClosed:
		c.failClosed = true
	default:
		errs = append(errs, fmt.Errorf("unknown failure mode %q", r.FailureMode))
	}
	if c.algorithm == "" {
		c.algorithm = config.FixedWindow
	}
	if c.algorithm == config.TokenBucket && c.burst == 0 {
		c.burst = c.limit
	}
	if c.algorithm != config.TokenBucket && c.burst != 0 {
		errs = append(errs, errors.New("burst is only valid with algorithm TokenBucket"))
	}
	if c.algorithm == config.TokenBucket && c.limit > 0 && c.window.Microseconds() < c.limit {
		// The bucket keeps time in microseconds of server time.
		errs = append(errs, fmt.Errorf("limit %d per %s is more than one per microsecond", c.limit, c.window))
	}
	if c.burst < 0 {
		errs = append(errs, fmt.Errorf("burst must be positive, got %d", c.burst))
	}
	errs = append(errs, c.compileQuotaAndHeaders(p, r)...)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	ms := c.window.Milliseconds()
	wsec := int64(math.Ceil(c.window.Seconds()))
	c.limitHeader = strconv.FormatInt(c.limit, 10)
	c.policyHeader = c.limitHeader + ";w=" + strconv.FormatInt(wsec, 10)
	c.fallbackRate = float64(c.limit) / c.window.Seconds()
	c.fallbackBurst = float64(c.limit)
	quota, qwin := c.limit, wsec
	switch c.algorithm {
	case config.FixedWindow:
		if c.leased {
			c.script = fixedLeaseScript
			c.args = []any{ms, c.limit}
		}
	case config.SlidingWindow:
		slot := (ms + slotsPerWindow - 1) / slotsPerWindow
		slots := (ms + slot - 1) / slot
		c.script = slidingWindowScript
		c.args = []any{slot, slots, c.limit}
	case config.TokenBucket:
		emission := float64(c.window.Microseconds()) / float64(c.limit)
		em := strconv.FormatFloat(emission, 'f', -1, 64)
		c.script = tokenBucketScript
		c.args = []any{em, c.burst}
		if c.leased {
			life, burst := leaseBurst(c.burst, emission)
			c.script, c.leaseLife = bucketLeaseScript, life
			c.args = []any{em, burst}
		}
		// A bucket's remaining tokens go up to burst, so burst is the quota
		// clients should see, over the time the bucket takes to refill it.
		c.limitHeader = strconv.FormatInt(c.burst, 10)
		c.policyHeader += ";burst=" + c.limitHeader
		c.fallbackBurst = float64(c.burst)
		quota, qwin = c.burst, int64(math.Ceil(emission*float64(c.burst)/1e6))
	default:
		return nil, fmt.Errorf("unknown algorithm %q: must be FixedWindow, SlidingWindow or TokenBucket", c.algorithm)
	}
	c.draftName = sfString(p.Name + "/" + r.Name)
	c.draftPolicy = c.draftName + ";q=" + strconv.FormatInt(quota, 10) + ";w=" + strconv.FormatInt(max(qwin, 1), 10)
	c.shape = string(c.algorithm) + "/" + strconv.FormatInt(ms, 10)
	if c.leased && c.algorithm == config.FixedWindow {
		// A lease counts granted units in a hash; a strict window counts
		// requests in a string per window: other keys.
		c.shape += "/leased"
	}
	c.keyPrefix = "rl:{" + escape(p.Namespace) + "/" + escape(p.Name) + "/" + escape(r.Name) + "/"
	return c, nil
}

// compileQuotaAndHeaders checks the rule's quota and its policy's header
// form.
func (c *rule) compileQuotaAndHeaders(p config.RateLimitPolicy, r config.RateLimitRule) []error {
	var errs []error
	switch r.Quota {
	case "", config.QuotaStrict:
	case config.QuotaLeased:
		if c.algorithm == config.SlidingWindow {
			errs = append(errs, errors.New("quota Leased applies to FixedWindow and TokenBucket only"))
		}
	default:
		errs = append(errs, fmt.Errorf("unknown quota %q", r.Quota))
	}
	switch p.Headers {
	case "":
		c.headers = config.HeadersDraft
	case config.HeadersDraft, config.HeadersLegacy, config.HeadersBoth:
	default:
		errs = append(errs, fmt.Errorf("unknown header form %q", p.Headers))
	}
	return errs
}

// counterKey returns the Redis key of the counter r is counted in.
//
// The request attributes are hashed rather than embedded: they are
// client-controlled, so hashing keeps them from breaking the {hash tag},
// bounds the key length whatever a client sends, and keeps subjects and
// addresses out of Redis key names. SHA-256 rather than a fast hash because a
// client able to construct collisions could drain another client's quota.
//
// A rule keyed by subject or header on a request that has no subject or
// header falls back to the client address (tagged differently, so an
// anonymous client can never share a counter with a subject or header value
// that looks like an address): anonymous traffic stays limited per client
// instead of sharing one counter that a single client could exhaust for all.
//
// The algorithm and window are hashed in as well: a reload that changes
// either starts new counters instead of feeding one algorithm's state to
// another's script, or slots of one length to a window of another. A reload
// that changes only the limit keeps the counts.
func (c *rule) counterKey(r *http.Request) string { return c.keyFor(r.Context(), r) }

// keyFor is counterKey with the identity taken from ctx.
func (c *rule) keyFor(ctx context.Context, r *http.Request) string {
	buf := make([]byte, 0, 128)
	buf = appendPart(buf, "shape", c.shape)
	var ip string
	clientIP := func() string {
		if ip == "" {
			ip = requestIP(ctx, r)
		}
		return ip
	}
	if c.key.ClientIP {
		buf = appendPart(buf, "ip", clientIP())
	}
	if c.key.Header != "" {
		if v, ok := r.Header[c.keyHeader]; ok && len(v) > 0 {
			buf = appendPart(buf, "header", strings.Join(v, ","))
		} else {
			buf = appendPart(buf, "no-header-ip", clientIP())
		}
	}
	if c.key.Subject {
		if s, ok := identity.Subject(ctx); ok {
			buf = appendPart(buf, "subject", s)
		} else {
			buf = appendPart(buf, "anonymous-ip", clientIP())
		}
	}
	if c.key.Path {
		// The canonical path; folded where the rule ignores case, so that
		// /API/login and /api/login, one route to the app, share a counter.
		p := r.URL.Path
		if c.match.CaseInsensitive() {
			p = request.FoldCase(p)
		}
		buf = appendPart(buf, "path", p)
	}
	sum := sha256.Sum256(buf)
	var hexSum [32]byte
	hex.Encode(hexSum[:], sum[:16])
	return c.keyPrefix + string(hexSum[:]) + "}"
}

// appendPart appends name and value length-prefixed, so that no two
// different attribute lists hash the same input.
func appendPart(buf []byte, name, value string) []byte {
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(name)))
	buf = append(buf, name...)
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(value)))
	return append(buf, value...)
}

// requestIP is the client address set by the identity middleware, or the
// connection's peer address when it did not run.
func requestIP(ctx context.Context, r *http.Request) string {
	if ip, ok := identity.ClientIP(ctx); ok {
		return ip.String()
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return a.Unmap().String()
	}
	return host
}

// escape percent-encodes the characters that would change a key's meaning:
// the braces of the hash tag, the "/" separating names, and "%" itself.
// Kubernetes names never contain them, but a rule name is free text.
func escape(s string) string {
	if !strings.ContainsAny(s, "{}/%") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch ch := s[i]; ch {
		case '{', '}', '/', '%':
			fmt.Fprintf(&b, "%%%02X", ch)
		default:
			b.WriteByte(ch)
		}
	}
	return b.String()
}

// sfString quotes s as a Structured Field String (RFC 9651 §3.3.3): printable
// ASCII with " and \ escaped; anything else becomes "?".
func sfString(s string) string {
	b := make([]byte, 0, len(s)+2)
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		switch ch := s[i]; {
		case ch == '"' || ch == '\\':
			b = append(b, '\\', ch)
		case ch < 0x20 || ch > 0x7e:
			b = append(b, '?')
		default:
			b = append(b, ch)
		}
	}
	return string(append(b, '"'))
}
