package ratelimit

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
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

// Policy is a config.RateLimitPolicy compiled: defaults applied, every
// rule checked and turned into its script arguments, matcher and headers.
// It is immutable and holds no connection; New gives it one. Compile is
// the only way to make one, so New never sees an invalid rule.
type Policy struct {
	namespace, name string
	// redis names the connection in the document's redis list.
	redis string
	rules []*rule
}

// Compile checks p and compiles it for New. It does no I/O, so the operator
// runs it (through sidecar/gate) on every section it renders, and a policy
// it accepts is one every sidecar accepts. Omitted fields take the
// defaults of config (RateLimitPolicy.Default). The error is
// config.FieldErrors with paths relative to the section ("rules[0].window").
func Compile(p config.RateLimitPolicy) (*Policy, error) {
	p.Default()
	var errs config.FieldErrors
	switch p.Headers {
	case config.HeadersDraft, config.HeadersLegacy, config.HeadersBoth:
	default:
		errs.Add("headers", fmt.Sprintf("unknown header form %q: must be Draft, Legacy or Both", p.Headers))
	}
	if len(p.Rules) == 0 {
		errs.Add("rules", "at least one rule is required")
	}
	out := &Policy{namespace: p.Namespace, name: p.Name, redis: p.Redis}
	seen := map[string]bool{}
	for i, r := range p.Rules {
		path := fmt.Sprintf("rules[%d]", i)
		errs.Unique(path+".name", r.Name, "rule name", seen)
		if cr := compile(&errs, path, p, r); cr != nil {
			out.rules = append(out.rules, cr)
		}
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// compile checks r, the defaulted rule at path of policy p, into errs and
// compiles it; it returns nil when r has a problem.
func compile(errs *config.FieldErrors, path string, p config.RateLimitPolicy, r config.RateLimitRule) *rule {
	before := len(*errs)
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
		shadow:    r.Mode == config.Shadow,
		// Open is the default failure mode.
		failClosed: r.FailureMode == config.FailClosed,
	}
	errs.Name(path+".name", r.Name)
	var err error
	c.match, err = request.Compile(r.Match, nil)
	errs.Merge(path+".match", err)
	if r.Key.Header != "" {
		errs.Header(path+".key.header", r.Key.Header)
	}
	if c.limit <= 0 {
		errs.Add(path+".limit", fmt.Sprintf("must be positive, got %d", c.limit))
	}
	// Counters and scripts work in whole milliseconds of server time.
	if c.window < time.Millisecond || c.window%time.Millisecond != 0 {
		errs.Add(path+".window", fmt.Sprintf("must be a positive whole number of milliseconds, got %s", c.window))
	}
	c.checkAlgorithm(errs, path)
	checkModes(errs, path, r)
	if len(*errs) > before {
		return nil
	}
	c.derive(p, r)
	return c
}

// checkAlgorithm checks the rule's algorithm and what depends on it.
func (c *rule) checkAlgorithm(errs *config.FieldErrors, path string) {
	switch c.algorithm {
	case config.FixedWindow, config.SlidingWindow:
		if c.burst != 0 {
			errs.Add(path+".burst", "only valid with algorithm TokenBucket")
		}
	case config.TokenBucket:
		// A burst defaulted from a bad limit is the limit's problem, which
		// is reported; naming burst would point at a field nobody set.
		if c.burst <= 0 && (c.limit > 0 || c.burst != c.limit) {
			errs.Add(path+".burst", fmt.Sprintf("must be positive, got %d", c.burst))
		}
		if c.limit > 0 && c.window > 0 && c.window.Microseconds() < c.limit {
			// The bucket keeps time in microseconds of server time.
			errs.Add(path+".limit", fmt.Sprintf("%d per %s is more than one per microsecond, the finest rate a TokenBucket keeps: lower the limit or lengthen the window", c.limit, c.window))
		}
	default:
		errs.Add(path+".algorithm", fmt.Sprintf("unknown algorithm %q: must be FixedWindow, SlidingWindow or TokenBucket", c.algorithm))
	}
}

// checkModes checks the rule's mode, failure mode and quota.
func checkModes(errs *config.FieldErrors, path string, r config.RateLimitRule) {
	switch r.Mode {
	case config.Enforce, config.Shadow:
	default:
		errs.Add(path+".mode", fmt.Sprintf("unknown mode %q: must be Enforce or Shadow", r.Mode))
	}
	switch r.FailureMode {
	case config.FailOpen, config.FailClosed:
	default:
		errs.Add(path+".failureMode", fmt.Sprintf("unknown failure mode %q: must be Open or Closed", r.FailureMode))
	}
	switch r.Quota {
	case config.QuotaStrict:
	case config.QuotaLeased:
		// A sliding window's slots cannot be handed out in slices.
		if r.Algorithm == config.SlidingWindow {
			errs.Add(path+".quota", "Leased applies to FixedWindow and TokenBucket only")
		}
	default:
		errs.Add(path+".quota", fmt.Sprintf("unknown quota %q: must be Strict or Leased", r.Quota))
	}
}

// derive precomputes, for a rule that passed its checks, its script and
// arguments, its headers, its fallback and its keys.
func (c *rule) derive(p config.RateLimitPolicy, r config.RateLimitRule) {
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
