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
	//go:embed index.lua
	indexSrc    string
	indexScript = redisconn.NewScript(indexSrc)
	//go:embed evict.lua
	evictSrc    string
	evictScript = redisconn.NewScript(evictSrc)
)

// store is the cache's Redis tier: the four things the HTTP semantics are
// built from (lookup, put, evict, broadcast) and the subscription, over the
// access layer, which owns deadlines, retries, breakers and topology. Each
// method is one request phase: all its calls share one deadline.
type store struct {
	rdb *redisconn.Client
	ks  keyspace
	// maxLifetime is the longest an entry of the policy lives in Redis.
	maxLifetime time.Duration
}

// lookup is what one round trip for a request found in Redis.
type lookup struct {
	// gen is the path's invalidation generation ("0" when never invalidated).
	gen string
	// vary is the path's upstream Vary spec; nil when unknown.
	vary    []string
	hasVary bool
	// raw is the variant found under the key built with vary.
	raw []byte
}

// lookup reads generation, Vary spec and the variant for the spec-less key
// in one call (all one slot); only when the path varies on upstream headers
// does it need a second read.
func (s *store) lookup(ctx context.Context, path string, variantKey func(vary []string) string) (lookup, string, error) {
	ctx, cancel := s.rdb.Phase(ctx)
	defer cancel()
	var gen, vary, plain *redis.StringCmd
	plainKey := variantKey(nil)
	err := s.rdb.Do(ctx, "lookup", plainKey, func(p *redisconn.Pipe) {
		gen = p.Get(ctx, s.ks.gen(path))
		vary = p.Get(ctx, s.ks.vary(path))
		plain = p.Get(ctx, plainKey)
	})
	if err != nil {
		return lookup{}, "", fmt.Errorf("read cache entry: %w", err)
	}
	var l lookup
	l.gen = "0"
	if v, err := gen.Result(); err == nil {
		l.gen = v
	}
	if v, err := vary.Result(); err == nil {
		l.hasVary = true
		l.vary = splitSpec(v)
	}
	key := variantKey(l.vary)
	if key == plainKey {
		if b, err := plain.Bytes(); err == nil {
			l.raw = b
		}
		return l, key, nil
	}
	var variant *redis.StringCmd
	if err := s.rdb.Do(ctx, "lookup", key, func(p *redisconn.Pipe) { variant = p.Get(ctx, key) }); err != nil {
		return lookup{}, "", fmt.Errorf("read cache variant: %w", err)
	}
	if b, err := variant.Bytes(); err == nil {
		l.raw = b
	}
	return l, key, nil
}

func splitSpec(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// put writes an entry and its indexes, unless the path's generation moved
// on since gen was read (a write invalidated it meanwhile). The indexes are
// written first: an indexed path without an entry is harmless, an entry that
// prefix or tag invalidation cannot find is not.
func (s *store) put(ctx context.Context, path, key string, vary []string, tags []string, gen string, e *entry, now time.Time) (bool, []byte, error) {
	px := e.expiresIn(now)
	if px <= 0 {
		return false, nil, nil
	}
	ctx, cancel := s.rdb.Phase(ctx)
	defer cancel()
	idx := []string{s.ks.paths()}
	for _, t := range tags {
		idx = append(idx, s.ks.tag(t))
	}
	expiry := now.Add(px).UnixMilli()
	err := s.rdb.Do(ctx, "index", idx[0], func(p *redisconn.Pipe) {
		p.Run(ctx, indexScript, idx, path, expiry, now.UnixMilli(), s.maxLifetime.Milliseconds())
	})
	if err != nil {
		return false, nil, fmt.Errorf("index cache entry: %w", err)
	}
	raw := e.marshal()
	var stored *redis.Cmd
	err = s.rdb.Do(ctx, "store", key, func(p *redisconn.Pipe) {
		stored = p.Run(ctx, storeScript, []string{key, s.ks.vars(path), s.ks.vary(path), s.ks.gen(path)},
			raw, px.Milliseconds(), strings.Join(vary, ","), gen)
	})
	if err != nil {
		return false, nil, fmt.Errorf("store cache entry: %w", err)
	}
	n, _ := stored.Int()
	return n == 1, raw, nil
}

// evict deletes every variant of the paths t names, directly or through
// the prefix and tag indexes, bumping each path's generation so no fill that
// read the old one can store. It returns how many paths it evicted.
func (s *store) evict(ctx context.Context, t targets, now time.Time) (int, error) {
	ctx, cancel := s.rdb.Phase(ctx)
	defer cancel()
	var errs []error
	paths := slices.Clone(t.Paths)
	if len(t.PathPrefixes) > 0 {
		ps, err := s.pathsWithPrefixes(ctx, t.PathPrefixes, now)
		errs = append(errs, err)
		paths = append(paths, ps...)
	}
	if len(t.Tags) > 0 {
		ps, err := s.pathsWithTags(ctx, t.Tags, now)
		errs = append(errs, err)
		paths = append(paths, ps...)
	}
	slices.Sort(paths)
	paths = slices.Compact(paths)
	// One call per path, each on its path's slot; the batch sends them as
	// one pipeline per node, the nodes concurrently.
	var b redisconn.Batch
	genPX := (s.maxLifetime + genGrace).Milliseconds()
	calls := make([]*redisconn.Call, len(paths))
	for i, p := range paths {
		keys := []string{s.ks.vars(p), s.ks.vary(p), s.ks.gen(p)}
		calls[i] = b.Add(s.rdb, "evict", keys[0], func(pp *redisconn.Pipe) { pp.Run(ctx, evictScript, keys, genPX) })
	}
	// Index members of evicted paths would only be pruned at their expiry.
	if len(paths) > 0 {
		members := make([]any, len(paths))
		for i, p := range paths {
			members[i] = p
		}
		idx := append([]string{s.ks.paths()}, s.tagKeys(t.Tags)...)
		b.Add(s.rdb, "evict", idx[0], func(p *redisconn.Pipe) {
			for _, k := range idx {
				p.ZRem(ctx, k, members...)
			}
		})
	}
	b.Exec(ctx)
	evicted := 0
	for i, c := range calls {
		if err := c.Err(); err != nil {
			errs = append(errs, fmt.Errorf("evict %s: %w", paths[i], err))
			continue
		}
		evicted++
	}
	return evicted, errors.Join(errs...)
}

func (s *store) tagKeys(tags []string) []string {
	keys := make([]string, len(tags))
	for i, t := range tags {
		keys[i] = s.ks.tag(t)
	}
	return keys
}

// pathsWithPrefixes scans the path index for live paths under any prefix.
func (s *store) pathsWithPrefixes(ctx context.Context, prefixes []string, now time.Time) ([]string, error) {
	var out []string
	var cursor uint64
	for {
		var scan *redis.ScanCmd
		if err := s.rdb.Do(ctx, "scan", s.ks.paths(), func(p *redisconn.Pipe) {
			scan = p.ZScan(ctx, s.ks.paths(), cursor, "", 512)
		}); err != nil {
			return nil, fmt.Errorf("scan path index: %w", err)
		}
		kv, next := scan.Val()
		// ZSCAN returns member, score pairs.
		for i := 0; i+1 < len(kv); i += 2 {
			path, score := kv[i], kv[i+1]
			if exp, err := strconv.ParseFloat(score, 64); err == nil && int64(exp) < now.UnixMilli() {
				continue
			}
			for _, p := range prefixes {
				if strings.HasPrefix(path, p) {
					out = append(out, path)
					break
				}
			}
		}
		if next == 0 {
			return out, nil
		}
		cursor = next
	}
}

// pathsWithTags reads the live paths stored under tags (one slot).
func (s *store) pathsWithTags(ctx context.Context, tags []string, now time.Time) ([]string, error) {
	cmds := make([]*redis.StringSliceCmd, len(tags))
	err := s.rdb.Do(ctx, "scan", s.ks.paths(), func(p *redisconn.Pipe) {
		for i, t := range tags {
			cmds[i] = p.ZRangeByScore(ctx, s.ks.tag(t), &redis.ZRangeBy{Min: strconv.FormatInt(now.UnixMilli(), 10), Max: "+inf"})
		}
	})
	if err != nil {
		return nil, fmt.Errorf("read tag indexes %v: %w", tags, err)
	}
	var out []string
	for _, c := range cmds {
		out = append(out, c.Val()...)
	}
	return out, nil
}

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
