package cache

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatehouse-dev/gatehouse/internal/redisconn"
)

var (
	//go:embed store.lua
	storeSrc    string
	storeScript = redisconn.NewScript(storeSrc)
	//go:embed evict.lua
	evictSrc    string
	evictScript = redisconn.NewScript(evictSrc)
	//go:embed invalidate.lua
	invalidateSrc    string
	invalidateScript = redisconn.NewScript(invalidateSrc)
)

// maxRecords bounds the prefix and tag invalidations a bucket remembers;
// beyond it they are merged into one that invalidates everything stored
// before it (coarse, but it loses nothing and bounds every lookup).
const maxRecords = 64

// store is the cache's Redis tier: the four things the HTTP semantics are
// built from (lookup, put, evict, broadcast) and the subscription, over the
// access layer, which owns deadlines, retries, breakers and topology. Each
// method is one request phase: all its calls share one deadline. No
// operation's cost grows with the number of paths, variants or tags cached.
type store struct {
	rdb *redisconn.Client
	ks  keyspace
	// maxLifetime is the longest an entry of the policy lives in Redis.
	maxLifetime time.Duration
}

// lookup is what one round trip for a request found in Redis.
type lookup struct {
	// gen is the path's invalidation generation (0 when never invalidated).
	gen int64
	// seq is the bucket's invalidation sequence (0 when none recorded).
	seq int64
	// vary is the path's upstream Vary spec.
	vary []string
	// raw is the variant found under the key built with vary.
	raw []byte
}

// lookup reads the path's generation and Vary spec, its bucket's
// invalidation sequence and the variant under guessKey (its key under the
// Vary spec this sidecar saw last for the path) in one call on one slot;
// only when the path's spec is not the guessed one does it need a second
// read.
func (s *store) lookup(ctx context.Context, path, guessKey string, variantKey func(vary []string) string) (lookup, string, error) {
	ctx, cancel := s.rdb.Phase(ctx)
	defer cancel()
	var b redisconn.Batch
	pl := s.queueLookup(ctx, &b, path, guessKey)
	b.Exec(ctx)
	return pl.result(ctx, variantKey)
}

// pendingLookup is the first round trip of a lookup, queued into a batch
// that may carry other features' calls too (Cache.Plan).
type pendingLookup struct {
	s          *store
	guessKey   string
	call       *redisconn.Call
	meta       *redis.SliceCmd
	seq, guess *redis.StringCmd
}

// queueLookup queues the first round trip of a lookup of path into b.
func (s *store) queueLookup(ctx context.Context, b *redisconn.Batch, path, guessKey string) *pendingLookup {
	bucket := bucketOf(path)
	pl := &pendingLookup{s: s, guessKey: guessKey}
	pl.call = b.Add(s.rdb, "lookup", guessKey, func(p *redisconn.Pipe) {
		pl.meta = p.HMGet(ctx, s.ks.meta(path), "gen", "vary")
		pl.seq = p.HGet(ctx, s.ks.gens(bucket), "seq")
		pl.guess = p.Get(ctx, guessKey)
	})
	return pl
}

// result reads the lookup once its batch ran: the variant under the path's
// Vary spec, read again (within ctx's phase) when that is not the guess.
func (pl *pendingLookup) result(ctx context.Context, variantKey func(vary []string) string) (lookup, string, error) {
	if err := pl.call.Err(); err != nil {
		return lookup{}, "", fmt.Errorf("read cache entry: %w", err)
	}
	var l lookup
	vals := pl.meta.Val()
	if len(vals) == 2 {
		if g, ok := vals[0].(string); ok {
			l.gen, _ = strconv.ParseInt(g, 10, 64)
		}
		if v, ok := vals[1].(string); ok {
			l.vary = splitSpec(v)
		}
	}
	if v, err := pl.seq.Result(); err == nil {
		l.seq, _ = strconv.ParseInt(v, 10, 64)
	}
	key := variantKey(l.vary)
	if key == pl.guessKey {
		if raw, err := pl.guess.Bytes(); err == nil {
			l.raw = raw
		}
		return l, key, nil
	}
	var variant *redis.StringCmd
	if err := pl.s.rdb.Do(ctx, "lookup", key, func(p *redisconn.Pipe) { variant = p.Get(ctx, key) }); err != nil {
		return lookup{}, "", fmt.Errorf("read cache variant: %w", err)
	}
	if raw, err := variant.Bytes(); err == nil {
		l.raw = raw
	}
	return l, key, nil
}

func splitSpec(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// records reads bucket b's prefix and tag invalidations.
func (s *store) records(ctx context.Context, b int) (*records, error) {
	ctx, cancel := s.rdb.Phase(ctx)
	defer cancel()
	var all *redis.MapStringStringCmd
	if err := s.rdb.Do(ctx, "lookup", s.ks.gens(b), func(p *redisconn.Pipe) { all = p.HGetAll(ctx, s.ks.gens(b)) }); err != nil {
		return nil, fmt.Errorf("read invalidations: %w", err)
	}
	return parseRecords(all.Val()), nil
}

// put writes an entry and its place in the path's variant cap, unless the
// path's generation moved on since gen was read (a write invalidated it
// meanwhile). It reports whether the entry was stored: false when refused
// by the generation; evicted when the variant cap dropped it at once.
func (s *store) put(ctx context.Context, path, key string, vary []string, e *entry, now time.Time, maxVariants int) (stored, evicted bool, raw []byte, err error) {
	px := e.expiresIn(now)
	if px <= 0 {
		return false, false, nil, nil
	}
	ctx, cancel := s.rdb.Phase(ctx)
	defer cancel()
	raw = e.marshal()
	var res *redis.Cmd
	metaPX := (s.maxLifetime + genGrace).Milliseconds()
	err = s.rdb.Do(ctx, "store", key, func(p *redisconn.Pipe) {
		res = p.Run(ctx, storeScript, []string{key, s.ks.meta(path), s.ks.variants(path)},
			raw, max(px.Milliseconds(), 1), strings.Join(vary, ","), strconv.FormatInt(e.Gen, 10),
			now.UnixMilli(), maxVariants, metaPX)
	})
	if err != nil {
		return false, false, nil, fmt.Errorf("store cache entry: %w", err)
	}
	n, _ := res.Int()
	return n == 1, n == 2, raw, nil
}

// evict invalidates what t names: each path by moving its generation on
// (one script on its slot), prefixes and tags by recording them in every
// bucket's copy of the policy's invalidations (one script per bucket). The
// work is a constant per target, whatever is cached; the calls go out as
// one pipeline per node, the nodes concurrently. It returns how many paths
// and targets it invalidated.
func (s *store) evict(ctx context.Context, t targets, now time.Time) (int, error) {
	ctx, cancel := s.rdb.Phase(ctx)
	defer cancel()
	paths := slices.Clone(t.Paths)
	slices.Sort(paths)
	paths = slices.Compact(paths)
	var b redisconn.Batch
	metaPX := (s.maxLifetime + genGrace).Milliseconds()
	var calls []*redisconn.Call
	for _, p := range paths {
		key := s.ks.meta(p)
		calls = append(calls, b.Add(s.rdb, "evict", key, func(pp *redisconn.Pipe) { pp.Run(ctx, evictScript, []string{key}, metaPX) }))
	}
	fields := make([]any, 0, len(t.PathPrefixes)+len(t.Tags))
	for _, p := range t.PathPrefixes {
		fields = append(fields, "p:"+p)
	}
	for _, tag := range t.Tags {
		fields = append(fields, "t:"+tag)
	}
	if len(fields) > 0 {
		args := append([]any{now.Add(metaDuration(s.maxLifetime)).UnixMilli(), now.UnixMilli(), maxRecords, metaPX}, fields...)
		for bucket := range buckets {
			key := s.ks.gens(bucket)
			calls = append(calls, b.Add(s.rdb, "evict", key, func(pp *redisconn.Pipe) { pp.Run(ctx, invalidateScript, []string{key}, args...) }))
		}
	}
	b.Exec(ctx)
	var errs []error
	for _, c := range calls {
		if err := c.Err(); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return 0, fmt.Errorf("invalidate %d of %d keys: %w", len(errs), len(calls), errors.Join(errs...))
	}
	return len(paths) + len(t.PathPrefixes) + len(t.Tags), nil
}

// metaDuration is how long invalidation state must outlive the entries it
// judges: the policy's longest entry lifetime plus the longest fill.
func metaDuration(maxLifetime time.Duration) time.Duration { return maxLifetime + genGrace }

// broadcast publishes msg to every replica's subscription.
func (s *store) broadcast(ctx context.Context, msg []byte) error {
	if _, err := s.rdb.Publish(ctx, "broadcast", s.ks.channel(), msg); err != nil {
		return fmt.Errorf("broadcast invalidation: %w", err)
	}
	return nil
}

// subscribe subscribes to the policy's broadcasts.
func (s *store) subscribe(ctx context.Context) *redisconn.Subscription {
	return s.rdb.Subscribe(ctx, s.ks.channel())
}
