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
// sessions of a subject. A subject's sessions and its index share one hash
// slot, named by the subject's bucket, which every token carries: creating a
// session is one atomic script (index entry and session together, so no
// session is ever missing from its index), and revoking them all reads the
// index and deletes what it lists on that one slot. Creates and revokes
// wait for a replica (WAIT), so a failover does not undo them.
//
// Resolved sessions are kept in a bounded in-process tier (tier.go) that
// every revocation reaches over Pub/Sub (a broadcast that failed is
// republished: republish.go), and a request's lookup is planned into the
// request's Redis batch (plan.go).
//
// All Redis access goes through internal/redisconn, which owns deadlines,
// retries, breakers and cluster topology.
package session

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatehouse-dev/gatehouse/internal/redisconn"
)

// create stores a session and its index entry together: one script on the
// subject's slot, so a session never exists without its entry. It also drops
// entries whose absolute expiry passed and makes the index live as long as
// its longest session.
//
//go:embed create.lua
var createSrc string

var createScript = redisconn.NewScript(createSrc)

// Manager is the session feature built from one compiled Policy and its
// Redis connection. It is immutable; a config reload builds a new one.
type Manager struct {
	Policy
	rdb *redisconn.Client
	m   *Metrics
	log *slog.Logger
	now func() time.Time

	// tier holds resolved sessions (tier.go); watch keeps the revocation
	// subscription on the policy's channel that keeps it coherent.
	tier  *tier
	watch *redisconn.Watch
	// pending holds revocations whose broadcast failed, republished in the
	// background (republish.go).
	pending *pendingRevocations
}

// New builds the Manager of p, a policy Compile accepted, on the Redis
// connection p names. It validates nothing of p: the only errors are
// missing runtime dependencies.
func New(p *Policy, conns map[string]*redisconn.Conn, m *Metrics, log *slog.Logger) (*Manager, error) {
	if m == nil {
		return nil, errors.New("session: metrics are required")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c, ok := conns[p.redis]
	if !ok || c == nil {
		return nil, fmt.Errorf("session policy %s/%s: unknown redis connection %q", p.namespace, p.name, p.redis)
	}
	mgr := &Manager{
		Policy: *p,
		// Required paths answer 503 while Redis is unavailable.
		rdb:  c.Client("session", true),
		m:    m,
		log:  log.With("policy", p.namespace+"/"+p.name),
		now:  time.Now,
		tier: newTier(),
	}
	mgr.watch = mgr.rdb.Watch(mgr.channel, mgr.tier.receive, func(err error) {
		mgr.tier.clear()
		mgr.log.Warn("session revocation subscription lost; in-process tier off until resubscribed", "err", err)
	})
	mgr.pending = newPendingRevocations()
	go mgr.republish()
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

// Key layout. A gh2 session and its subject's index share the hash tag of
// the subject's bucket:
//
//	<base>{<bucket>}:s:<idhash>   the session (encrypted auth context)
//	<base>{<bucket>}:u:<subject>  the subject's index
//
// where <bucket> is the 14-bit bucket as four hex digits, <idhash> the
// base64url SHA-256 of the token id (idHash) and <subject> the base64url
// SHA-256 of the policy and subject (subjectSum). gh1 sessions, issued
// before, and their indexes live at <base>s:<idhash> and <base>u:<subject>,
// spread over slots, until they expire.

// sessionKey names the session of t.
func (m *Manager) sessionKey(t token) string {
	if t.legacy {
		return m.base + "s:" + t.idHash()
	}
	return m.bucketBase(t.bucket()) + "s:" + t.idHash()
}

// keyFor is sessionKey with one allocation; it runs on every request.
func (m *Manager) keyFor(t token) string {
	var in [len(idHashLabel) + idLen]byte
	copy(in[copy(in[:], idHashLabel):], t.id[:])
	sum := sha256.Sum256(in[:])
	buf := make([]byte, 0, len(m.base)+9+43)
	buf = append(buf, m.base...)
	if !t.legacy {
		buf = appendBucketTag(buf, t.bucket())
	}
	buf = append(buf, "s:"...)
	buf = b64.AppendEncode(buf, sum[:])
	return string(buf)
}

// bucketBase is base followed by the hash tag of bucket b.
func (m *Manager) bucketBase(b uint16) string {
	return string(appendBucketTag([]byte(m.base), b))
}

func appendBucketTag(buf []byte, b uint16) []byte {
	const hex = "0123456789abcdef"
	return append(buf, '{', hex[b>>12&0xf], hex[b>>8&0xf], hex[b>>4&0xf], hex[b&0xf], '}', ':')
}

// subjectSum hashes a subject so no key spells it; namespace and policy are
// part of the hash input as well as the prefix, so equal subjects of two
// policies never share an index.
func (m *Manager) subjectSum(subject string) [sha256.Size]byte {
	return sha256.Sum256([]byte("gatehouse subject v1\x00" + m.base + "\x00" + subject))
}

// bucketOf is the subject's bucket: 14 bits of its hash, one value per
// cluster slot, so subjects spread evenly over the shards.
func (m *Manager) bucketOf(subject string) uint16 {
	sum := m.subjectSum(subject)
	return binary.BigEndian.Uint16(sum[:2]) % buckets
}

// indexKey names a subject's index, in the subject's slot.
func (m *Manager) indexKey(subject string) string {
	sum := m.subjectSum(subject)
	return m.bucketBase(binary.BigEndian.Uint16(sum[:2])%buckets) + "u:" + b64.EncodeToString(sum[:])
}

// legacyIndexKey names the index of a subject's gh1 sessions.
func (m *Manager) legacyIndexKey(subject string) string {
	sum := m.subjectSum(subject)
	return m.base + "u:" + b64.EncodeToString(sum[:])
}

// Lookup errors. errStore wraps Redis failures, so callers can tell "no such
// session" from "cannot tell".
var (
	errNotFound = errors.New("session not found")
	errExpired  = errors.New("session expired")
	errStore    = errors.New("session store unavailable")
)

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

// create stores a new session and returns its token and current expiry. It
// returns once the session is stored and, where the deployment has
// replicas, one replica acknowledged it (see redisconn.Batch.AddDurable).
func (m *Manager) create(ctx context.Context, subject string, claims map[string]string, lifetime time.Duration) (string, time.Time, error) {
	if lifetime == 0 {
		lifetime = m.ttl
		if m.sliding {
			lifetime = max(m.maxLifetime, m.ttl)
		}
	}
	t, err := newToken(m.bucketOf(subject))
	if err != nil {
		return "", time.Time{}, err
	}
	now := m.now()
	end := now.Add(lifetime)
	key := m.keyFor(t)
	pt, err := json.Marshal(Context{Subject: subject, Claims: claims, CreatedMs: now.UnixMilli(), ExpiresMs: end.UnixMilli()})
	if err != nil {
		return "", time.Time{}, fmt.Errorf("encode session: %w", err)
	}
	val, err := t.seal(key, pt)
	if err != nil {
		return "", time.Time{}, err
	}
	keyTTL := lifetime
	if m.sliding {
		keyTTL = min(m.ttl, lifetime)
	}
	replicated, err := m.rdb.DoDurable(ctx, "create", key, func(p *redisconn.Pipe) {
		p.Run(ctx, createScript, []string{m.indexKey(subject), key},
			t.idHash(), end.UnixMilli(), now.UnixMilli(), val, max(keyTTL.Milliseconds(), 1))
	})
	if err != nil {
		return "", time.Time{}, fmt.Errorf("store session: %w", err)
	}
	if !replicated {
		m.log.DebugContext(ctx, "session stored before a replica acknowledged it")
	}
	m.m.created.Inc()
	return t.String(), now.Add(keyTTL), nil
}

// revoke deletes the session of t and removes it from its subject's index.
// It reports whether a session was deleted. Only the holder of the full
// token can revoke: the payload must decrypt first.
//
// The broadcast goes out whether or not the session was still there: a
// revoke the app retries because the first attempt's broadcast failed
// (503) finds the session already deleted, and other sidecars' tiers learn
// of the revocation only from this broadcast.
func (m *Manager) revoke(ctx context.Context, t token) (bool, error) {
	ctx, cancel := m.rdb.Phase(ctx)
	defer cancel()
	key := m.keyFor(t)
	var get *redis.StringCmd
	if err := m.rdb.Do(ctx, "revoke", key, func(p *redisconn.Pipe) { get = p.Get(ctx, key) }); err != nil {
		return false, fmt.Errorf("read session: %w", err)
	}
	val, err := get.Result()
	if errors.Is(err, redis.Nil) {
		m.tier.evictKey(key)
		return false, m.announce(ctx, revocation{Session: key})
	}
	sc, err := m.decode(t, key, val)
	if err != nil {
		return false, nil
	}
	hash := t.idHash()
	var b redisconn.Batch
	var del *redis.IntCmd
	call := b.AddDurable(m.rdb, "revoke", key, func(p *redisconn.Pipe) {
		del = p.Del(ctx, key)
		if !t.legacy {
			p.ZRem(ctx, m.indexKey(sc.Subject), hash)
		}
	})
	if t.legacy {
		// A gh1 session and its index live in different slots.
		idx := m.legacyIndexKey(sc.Subject)
		b.Add(m.rdb, "revoke", idx, func(p *redisconn.Pipe) { p.ZRem(ctx, idx, hash) })
	}
	b.Exec(ctx)
	if err := call.Err(); err != nil {
		return false, fmt.Errorf("delete session: %w", err)
	}
	m.tier.evictKey(key)
	if err := m.announce(ctx, revocation{Session: key}); err != nil {
		return false, err
	}
	if del.Val() == 1 {
		m.m.revoked.Inc()
		return true, nil
	}
	return false, nil
}

// revokeAll deletes every session of subject and returns how many existed.
//
// Every session whose create returned before revokeAll began is in the
// index when it is read (create writes session and entry atomically), so it
// is deleted. A session created meanwhile may or may not be; its entry is
// never removed without the session, so a later revokeAll finds it.
func (m *Manager) revokeAll(ctx context.Context, subject string) (int, error) {
	ctx, cancel := m.rdb.Phase(ctx)
	defer cancel()
	idx, legacyIdx := m.indexKey(subject), m.legacyIndexKey(subject)
	var read redisconn.Batch
	var cur, old *redis.StringSliceCmd
	c1 := read.Add(m.rdb, "revoke_all", idx, func(p *redisconn.Pipe) { cur = p.ZRange(ctx, idx, 0, -1) })
	c2 := read.Add(m.rdb, "revoke_all", legacyIdx, func(p *redisconn.Pipe) { old = p.ZRange(ctx, legacyIdx, 0, -1) })
	read.Exec(ctx)
	if err := errors.Join(c1.Err(), c2.Err()); err != nil {
		return 0, fmt.Errorf("read subject index: %w", err)
	}

	var del redisconn.Batch
	var calls []*redisconn.Call
	var curDel *redis.IntCmd
	if members := cur.Val(); len(members) > 0 {
		base := m.bucketBase(m.bucketOf(subject))
		keys := make([]string, len(members))
		rem := make([]any, len(members))
		for i, h := range members {
			keys[i], rem[i] = base+"s:"+h, h
		}
		calls = append(calls, del.AddDurable(m.rdb, "revoke_all", idx, func(p *redisconn.Pipe) {
			curDel = p.Del(ctx, keys...)
			p.ZRem(ctx, idx, rem...)
		}))
	}
	// gh1 sessions are spread over slots: one DEL each.
	legacy := old.Val()
	oldDels := make([]*redis.IntCmd, len(legacy))
	for i, h := range legacy {
		k := m.base + "s:" + h
		calls = append(calls, del.Add(m.rdb, "revoke_all", k, func(p *redisconn.Pipe) { oldDels[i] = p.Del(ctx, k) }))
	}
	del.Exec(ctx)
	var errs []error
	for _, c := range calls {
		errs = append(errs, c.Err())
	}
	if err := errors.Join(errs...); err != nil {
		return 0, fmt.Errorf("delete sessions: %w", err)
	}
	m.tier.evictSubject(m.subjectSum(subject))
	// Broadcast even when the index was empty: a retry after a failed
	// broadcast finds the sessions already deleted.
	if err := m.announce(ctx, revocation{Subject: subjectB64(m.subjectSum(subject))}); err != nil {
		return 0, err
	}
	n := 0
	if curDel != nil {
		n = int(curDel.Val())
	}
	// A gh1 entry leaves the index only with its session: a previous
	// version's create writes the entry first and the session after, and
	// must not be left with a session its index no longer lists.
	var gone []any
	for i, d := range oldDels {
		if d.Val() == 1 {
			gone = append(gone, legacy[i])
			n++
		}
	}
	if len(gone) > 0 {
		if err := m.rdb.Do(ctx, "revoke_all", legacyIdx, func(p *redisconn.Pipe) { p.ZRem(ctx, legacyIdx, gone...) }); err != nil {
			m.log.WarnContext(ctx, "trim the gh1 subject index", "err", err)
		}
	}
	m.m.revoked.Add(float64(n))
	return n, nil
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

// RedisHealth is the feature's view of its Redis connection, for /readyz.
func (m *Manager) RedisHealth() []redisconn.Health { return []redisconn.Health{m.rdb.Health()} }
