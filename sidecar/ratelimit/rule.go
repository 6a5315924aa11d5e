package ratelimit

import (
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

	keyPrefix    string // "rl:{<ns>/<policy>/<rule>/"
	shape        string // algorithm and window, hashed into every key
	script       *redisconn.Script
	args         []any
	limitHeader  string // RateLimit-Limit value
	policyHeader string // RateLimit-Policy value

	fallbackRate  float64 // tokens per second for the in-process fallback
	fallbackBurst float64
}

// compile validates r of policy p, reporting every problem at once.
func compile(p config.RateLimitPolicy, r config.RateLimitRule) (*rule, error) {
	var errs []error
	c := &rule{
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
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	ms := c.window.Milliseconds()
	wsec := strconv.FormatInt(int64(math.Ceil(c.window.Seconds())), 10)
	c.limitHeader = strconv.FormatInt(c.limit, 10)
	c.policyHeader = c.limitHeader + ";w=" + wsec
	c.fallbackRate = float64(c.limit) / c.window.Seconds()
	c.fallbackBurst = float64(c.limit)
	switch c.algorithm {
	case config.FixedWindow:
		c.script = fixedWindowScript
		c.args = []any{ms, c.limit}
	case config.SlidingWindow:
		slot := (ms + slotsPerWindow - 1) / slotsPerWindow
		slots := (ms + slot - 1) / slot
		c.script = slidingWindowScript
		c.args = []any{slot, slots, c.limit}
	case config.TokenBucket:
		emission := float64(c.window.Microseconds()) / float64(c.limit)
		c.script = tokenBucketScript
		c.args = []any{strconv.FormatFloat(emission, 'f', -1, 64), c.burst}
		// A bucket's remaining tokens go up to burst, so burst is the quota
		// clients should see.
		c.limitHeader = strconv.FormatInt(c.burst, 10)
		c.policyHeader += ";burst=" + c.limitHeader
		c.fallbackBurst = float64(c.burst)
	default:
		return nil, fmt.Errorf("unknown algorithm %q: must be FixedWindow, SlidingWindow or TokenBucket", c.algorithm)
	}
	c.shape = string(c.algorithm) + "/" + strconv.FormatInt(ms, 10)
	c.keyPrefix = "rl:{" + escape(p.Namespace) + "/" + escape(p.Name) + "/" + escape(r.Name) + "/"
	return c, nil
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
func (c *rule) counterKey(r *http.Request) string {
	buf := make([]byte, 0, 128)
	buf = appendPart(buf, "shape", c.shape)
	var ip string
	clientIP := func() string {
		if ip == "" {
			ip = requestIP(r)
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
		if s, ok := identity.Subject(r.Context()); ok {
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
func requestIP(r *http.Request) string {
	if ip, ok := identity.ClientIP(r.Context()); ok {
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
