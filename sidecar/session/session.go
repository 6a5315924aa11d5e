// Package session turns opaque bearer tokens into an authenticated subject,
// backed by Redis (standalone or cluster).
//
// Redis never holds anything usable: a token is a random id plus a random
// secret; the session key is a hash of the id and the stored auth context is
// encrypted (AES-256-GCM) with a key derived from the secret, bound to the key
// name. A dump or MONITOR of Redis reveals neither tokens nor subjects.
//
// A per-subject index (a sorted set named by a hash of the subject, members
// are hashed session names scored by absolute expiry) lets the app revoke all
// sessions of a subject; sessions live in different cluster slots, so
// revocation deletes them one by one.
package session

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatehouse-dev/gatehouse/internal/redisconn"
	"github.com/gatehouse-dev/gatehouse/sidecar/config"
)

// Defaults for zero-valued policy fields.
const (
	DefaultTTL       = 30 * time.Minute
	DefaultKeyPrefix = "auth:ctx:"
	DefaultHeader    = "Authorization"
	DefaultScheme    = "Bearer"
	// DefaultMaxLifetime caps a sliding session that was created without a
	// ttl. An absolute cap bounds how long a stolen token stays useful and
	// lets the per-subject index expire.
	DefaultMaxLifetime = 7 * 24 * time.Hour
	// maxLifetimeLimit bounds the ttl the admin API accepts.
	maxLifetimeLimit = 366 * 24 * time.Hour
)

// store is what the session feature needs from Redis; *redis.Client and
// *redis.ClusterClient both satisfy it.
type store interface {
	redis.Scripter
	Get(ctx context.Context, key string) *redis.StringCmd
	GetEx(ctx context.Context, key string, expiration time.Duration) *redis.StringCmd
	Set(ctx context.Context, key string, value any, expiration time.Duration) *redis.StatusCmd
	Del(ctx context.Context, keys ...string) *redis.IntCmd
	PExpire(ctx context.Context, key string, expiration time.Duration) *redis.BoolCmd
	ZRange(ctx context.Context, key string, start, stop int64) *redis.StringSliceCmd
	Pipelined(ctx context.Context, fn func(redis.Pipeliner) error) ([]redis.Cmder, error)
}

// indexAdd adds a session to its subject's index, drops entries whose
// absolute expiry passed and makes the index live as long as its longest
// session. It touches one key, so it runs anywhere in a cluster.
//
//go:embed index_add.lua
var indexAddSrc string

var indexAdd = redis.NewScript(indexAddSrc)

// Manager is the session feature built from one SessionPolicy. It is
// immutable; a config reload builds a new one.
type Manager struct {
	rdb     store
	m       *Metrics
	log     *slog.Logger
	now     func() time.Time
	ttl     time.Duration
	sliding bool
	// maxLifetime caps sliding sessions created without their own ttl.
	maxLifetime time.Duration
	// timeout bounds a lookup's wait for Redis, so an outage answers 503
	// promptly instead of after go-redis' dial retries.
	timeout time.Duration
	refresh time.Duration
	// base is keyPrefix + namespace + ":" + name + ":"; session keys add
	// "s:"+hash(id), subject indexes "u:"+hash(subject).
	base       string
	header     string
	scheme     string // "" means the bare token
	cookie     string
	requireFor []string
	public     []string
	forward    []forwardedClaim
}

type forwardedClaim struct {
	name   string
	header string
}

// New builds a Manager for p using the Redis connection p names.
func New(p config.SessionPolicy, clients map[string]redis.UniversalClient, m *Metrics, log *slog.Logger) (*Manager, error) {
	if m == nil {
		return nil, errors.New("session: metrics are required")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c, ok := clients[p.Redis]
	if !ok || c == nil {
		return nil, fmt.Errorf("session policy %s/%s: unknown redis connection %q", p.Namespace, p.Name, p.Redis)
	}
	mgr := &Manager{
		rdb:         c,
		timeout:     redisconn.RequestTimeout(c),
		m:           m,
		log:         log.With("policy", p.Namespace+"/"+p.Name),
		now:         time.Now,
		ttl:         p.TTL.D(),
		sliding:     p.Sliding,
		maxLifetime: p.MaxLifetime.D(),
		refresh:     p.RefreshBelow.D(),
		requireFor:  p.RequireFor,
		public:      p.PublicPaths,
	}
	if mgr.ttl == 0 {
		mgr.ttl = DefaultTTL
	}
	var errs []error
	if mgr.maxLifetime == 0 {
		mgr.maxLifetime = DefaultMaxLifetime
	}
	if mgr.maxLifetime < 0 || mgr.maxLifetime > maxLifetimeLimit {
		errs = append(errs, fmt.Errorf("maxLifetime: must be positive and at most %s, got %s", maxLifetimeLimit, mgr.maxLifetime))
	}
	if mgr.ttl < time.Millisecond {
		errs = append(errs, fmt.Errorf("ttl: must be at least 1ms, got %s", mgr.ttl))
	}
	if mgr.refresh < 0 || (mgr.refresh > 0 && mgr.refresh >= mgr.ttl) {
		errs = append(errs, fmt.Errorf("refreshBelow: must be between 0 and ttl (%s), got %s", mgr.ttl, mgr.refresh))
	}
	if mgr.refresh > 0 && !mgr.sliding {
		errs = append(errs, errors.New("refreshBelow: only applies to sliding sessions"))
	}
	prefix := p.KeyPrefix
	if prefix == "" {
		prefix = DefaultKeyPrefix
	}
	mgr.base = prefix + p.Namespace + ":" + p.Name + ":"

	mgr.header, mgr.cookie = p.Token.Header, p.Token.Cookie
	if mgr.header == "" && mgr.cookie == "" {
		mgr.header = DefaultHeader
	}
	mgr.header = http.CanonicalHeaderKey(mgr.header)
	mgr.scheme = p.Token.Scheme
	// An empty scheme on the Authorization header means the default; on a
	// custom header it means the bare token, as custom headers rarely carry one.
	if mgr.scheme == "" && mgr.header == DefaultHeader {
		mgr.scheme = DefaultScheme
	}
	if len(mgr.requireFor) == 0 {
		mgr.requireFor = []string{"/"}
	}
	for i, c := range p.ForwardClaims {
		if !validHeaderName(c) {
			errs = append(errs, fmt.Errorf("forwardClaims[%d]: %q cannot be part of a header name", i, c))
			continue
		}
		mgr.forward = append(mgr.forward, forwardedClaim{name: c, header: http.CanonicalHeaderKey(claimHeaderPrefix + c)})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("session policy %s/%s: %w", p.Namespace, p.Name, err)
	}
	return mgr, nil
}

// Context is the auth context of a session, as stored (encrypted) in Redis.
type Context struct {
	// Subject identifies who the session belongs to.
	Subject string `json:"sub"`
	// Claims are extra auth-context fields; forwardClaims selects which reach the app.
	Claims map[string]string `json:"claims,omitempty"`
	// CreatedMs is the creation time in Unix milliseconds.
	CreatedMs int64 `json:"iat"`
	// ExpiresMs is the absolute end of the session in Unix milliseconds. A
	// sliding session may end earlier when idle for the policy's ttl.
	ExpiresMs int64 `json:"exp"`
}

func (m *Manager) sessionKey(hash string) string { return m.base + "s:" + hash }

// keyFor is sessionKey(t.idHash()) with one allocation; it runs on every request.
func (m *Manager) keyFor(t token) string {
	var in [len(idHashLabel) + idLen]byte
	copy(in[copy(in[:], idHashLabel):], t.id[:])
	sum := sha256.Sum256(in[:])
	buf := make([]byte, 0, len(m.base)+2+43)
	buf = append(buf, m.base...)
	buf = append(buf, "s:"...)
	buf = b64.AppendEncode(buf, sum[:])
	return string(buf)
}

// indexKey names a subject's index. The subject is hashed so no key
// spells it; namespace and policy are part of the hash input as well as the
// prefix, so equal subjects of two policies never share an index.
func (m *Manager) indexKey(subject string) string {
	return m.base + "u:" + hashString("gatehouse subject v1\x00"+m.base+"\x00"+subject)
}

// observe records the latency of one Redis round trip.
func (m *Manager) observe(op string, start time.Time) {
	m.m.byOp[op].Observe(time.Since(start).Seconds())
}

// Lookup errors. errStore wraps Redis failures, so callers can tell "no such
// session" from "cannot tell".
var (
	errNotFound = errors.New("session not found")
	errExpired  = errors.New("session expired")
	errStore    = errors.New("session store unavailable")
)

// lookup resolves t on the data path, extending a sliding session.
func (m *Manager) lookup(ctx context.Context, t token) (*Context, error) {
	key := m.keyFor(t)
	start := m.now()
	var (
		val string
		err error
	)
	switch {
	case m.sliding && m.refresh > 0:
		// GET and PTTL in one round trip; write only when the session is
		// about to run out, trading a slightly shorter idle window for far
		// fewer writes.
		var get *redis.StringCmd
		var pttl *redis.DurationCmd
		_, err = m.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			get = p.Get(ctx, key)
			pttl = p.PTTL(ctx, key)
			return nil
		})
		m.observe("lookup", start)
		if err == nil || errors.Is(err, redis.Nil) {
			val, err = get.Val(), get.Err()
			if err == nil && pttl.Val() >= 0 && pttl.Val() < m.refresh {
				s := m.now()
				if perr := m.rdb.PExpire(ctx, key, m.ttl).Err(); perr != nil {
					// The session is still valid for its remaining time; a failed
					// extension must not fail this request.
					m.log.WarnContext(ctx, "extend session", "err", perr)
				}
				m.observe("extend", s)
			}
		}
	case m.sliding:
		val, err = m.rdb.GetEx(ctx, key, m.ttl).Result()
		m.observe("lookup", start)
	default:
		val, err = m.rdb.Get(ctx, key).Result()
		m.observe("lookup", start)
	}
	if errors.Is(err, redis.Nil) {
		return nil, errNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errStore, err)
	}
	sc, err := m.decode(t, key, val)
	if err != nil {
		return nil, err
	}
	if sc.ExpiresMs > 0 && m.now().UnixMilli() >= sc.ExpiresMs {
		// Sliding kept the key alive past its absolute end; remove it now
		// rather than let further attempts keep extending it.
		if derr := m.rdb.Del(ctx, key).Err(); derr != nil {
			m.log.WarnContext(ctx, "delete expired session", "err", derr)
		}
		return nil, errExpired
	}
	return sc, nil
}

// decode decrypts and parses a stored value. A value that does not decrypt
// is reported as not found: for the client it is indistinguishable.
func (m *Manager) decode(t token, key, val string) (*Context, error) {
	pt, err := t.open(key, []byte(val))
	if err != nil {
		return nil, errNotFound
	}
	var sc Context
	if err := json.Unmarshal(pt, &sc); err != nil || sc.Subject == "" {
		return nil, errNotFound
	}
	return &sc, nil
}

// create stores a new session and returns its token and current expiry.
func (m *Manager) create(ctx context.Context, subject string, claims map[string]string, lifetime time.Duration) (string, time.Time, error) {
	if lifetime == 0 {
		lifetime = m.ttl
		if m.sliding {
			lifetime = max(m.maxLifetime, m.ttl)
		}
	}
	t, err := newToken()
	if err != nil {
		return "", time.Time{}, err
	}
	now := m.now()
	end := now.Add(lifetime)
	hash := t.idHash()
	key := m.sessionKey(hash)
	pt, err := json.Marshal(Context{Subject: subject, Claims: claims, CreatedMs: now.UnixMilli(), ExpiresMs: end.UnixMilli()})
	if err != nil {
		return "", time.Time{}, fmt.Errorf("encode session: %w", err)
	}
	val, err := t.seal(key, pt)
	if err != nil {
		return "", time.Time{}, err
	}
	// Index first: if storing the session then fails, the index holds a dead
	// entry that expires; the reverse order could leave a session that
	// revoke-all cannot find.
	start := m.now()
	err = indexAdd.Run(ctx, m.rdb, []string{m.indexKey(subject)}, hash, end.UnixMilli(), now.UnixMilli()).Err()
	m.observe("index", start)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("index session: %w", err)
	}
	keyTTL := lifetime
	if m.sliding {
		keyTTL = min(m.ttl, lifetime)
	}
	start = m.now()
	err = m.rdb.Set(ctx, key, val, keyTTL).Err()
	m.observe("create", start)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("store session: %w", err)
	}
	m.m.created.Inc()
	return t.String(), now.Add(keyTTL), nil
}

// revoke deletes the session of t and removes it from its subject's index.
// It reports whether a session was deleted. Only the holder of the full
// token can revoke: the payload must decrypt first.
func (m *Manager) revoke(ctx context.Context, t token) (bool, error) {
	hash := t.idHash()
	key := m.sessionKey(hash)
	start := m.now()
	val, err := m.rdb.Get(ctx, key).Result()
	m.observe("revoke", start)
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read session: %w", err)
	}
	sc, err := m.decode(t, key, val)
	if err != nil {
		return false, nil
	}
	var del *redis.IntCmd
	start = m.now()
	// The two keys may be on different cluster nodes; a pipeline sends one
	// command to each rather than one multi-slot command.
	_, err = m.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		del = p.Del(ctx, key)
		p.ZRem(ctx, m.indexKey(sc.Subject), hash)
		return nil
	})
	m.observe("revoke", start)
	if err != nil {
		return false, fmt.Errorf("delete session: %w", err)
	}
	if del.Val() == 1 {
		m.m.revoked.Inc()
		return true, nil
	}
	return false, nil
}

// revokeAll deletes every session of subject and returns how many existed.
func (m *Manager) revokeAll(ctx context.Context, subject string) (int, error) {
	idx := m.indexKey(subject)
	start := m.now()
	members, err := m.rdb.ZRange(ctx, idx, 0, -1).Result()
	m.observe("revoke_all", start)
	if err != nil {
		return 0, fmt.Errorf("read subject index: %w", err)
	}
	if len(members) == 0 {
		return 0, nil
	}
	dels := make([]*redis.IntCmd, len(members))
	start = m.now()
	// Sessions sit in different slots: one DEL each, pipelined per node.
	// Members are removed individually (not DEL of the index) so a session
	// created meanwhile stays revocable.
	_, err = m.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, h := range members {
			dels[i] = p.Del(ctx, m.sessionKey(h))
		}
		rem := make([]any, len(members))
		for i, h := range members {
			rem[i] = h
		}
		p.ZRem(ctx, idx, rem...)
		return nil
	})
	m.observe("revoke_all", start)
	if err != nil {
		return 0, fmt.Errorf("delete sessions: %w", err)
	}
	n := 0
	for _, d := range dels {
		n += int(d.Val())
	}
	m.m.revoked.Add(float64(n))
	return n, nil
}

// hashString is the base64url SHA-256 of s.
func hashString(s string) string {
	sum := sha256.Sum256([]byte(s))
	return b64.EncodeToString(sum[:])
}

// validHeaderName reports whether s is an RFC 9110 token, usable in a
// header field name.
func validHeaderName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			continue
		}
		if !strings.ContainsRune("!#$%&'*+-.^_`|~", rune(c)) {
			return false
		}
	}
	return true
}

// validHeaderValue reports whether s can be sent as a header value without
// splitting or corrupting the header block.
func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}
