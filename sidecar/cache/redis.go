package cache

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisClient is the part of a go-redis client the cache uses; both
// *redis.Client and *redis.ClusterClient satisfy it.
type redisClient interface {
	redis.Scripter
	Pipelined(ctx context.Context, fn func(redis.Pipeliner) error) ([]redis.Cmder, error)
	Get(ctx context.Context, key string) *redis.StringCmd
	ZScan(ctx context.Context, key string, cursor uint64, match string, count int64) *redis.ScanCmd
	ZRangeByScore(ctx context.Context, key string, opt *redis.ZRangeBy) *redis.StringSliceCmd
	ZRem(ctx context.Context, key string, members ...any) *redis.IntCmd
	Del(ctx context.Context, keys ...string) *redis.IntCmd
	Publish(ctx context.Context, channel string, message any) *redis.IntCmd
	SPublish(ctx context.Context, channel string, message any) *redis.IntCmd
	Subscribe(ctx context.Context, channels ...string) *redis.PubSub
	SSubscribe(ctx context.Context, channels ...string) *redis.PubSub
}

var (
	//go:embed store.lua
	storeSrc    string
	storeScript = redis.NewScript(storeSrc)
	//go:embed index.lua
	indexSrc    string
	indexScript = redis.NewScript(indexSrc)
	//go:embed evict.lua
	evictSrc    string
	evictScript = redis.NewScript(evictSrc)
)

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

// fetchRedis reads generation, Vary spec and the variant for the
// spec-less key in one pipelined round trip (all one slot); only when the path
// varies on upstream headers does it need a second read.
func (c *Cache) fetchRedis(ctx context.Context, path string, variantKey func(vary []string) string) (lookup, string, error) {
	var gen, vary, plain *redis.StringCmd
	plainKey := variantKey(nil)
	cmds, _ := c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		gen = p.Get(ctx, c.ks.gen(path))
		vary = p.Get(ctx, c.ks.vary(path))
		plain = p.Get(ctx, plainKey)
		return nil
	})
	// Pipelined reports only the first error, which may be a mere redis.Nil.
	for _, cmd := range cmds {
		if err := cmd.Err(); err != nil && !errors.Is(err, redis.Nil) {
			return lookup{}, "", fmt.Errorf("read cache entry: %w", err)
		}
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
	b, err := c.rdb.Get(ctx, key).Bytes()
	switch {
	case errors.Is(err, redis.Nil):
	case err != nil:
		return lookup{}, "", fmt.Errorf("read cache variant: %w", err)
	default:
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

// storeRedis writes an entry and its indexes. The indexes are written first:
// an indexed path without an entry is harmless, an entry that prefix or tag
// invalidation cannot find is not.
func (c *Cache) storeRedis(ctx context.Context, path, key string, vary []string, tags []string, gen string, e *entry, now time.Time) (bool, []byte, error) {
	px := e.expiresIn(now)
	if px <= 0 {
		return false, nil, nil
	}
	idx := []string{c.ks.paths()}
	for _, t := range tags {
		idx = append(idx, c.ks.tag(t))
	}
	expiry := now.Add(px).UnixMilli()
	idxPX := c.maxLifetime.Milliseconds()
	if err := indexScript.Run(ctx, c.rdb, idx, path, expiry, now.UnixMilli(), idxPX).Err(); err != nil {
		return false, nil, fmt.Errorf("index cache entry: %w", err)
	}
	raw := e.marshal()
	n, err := storeScript.Run(ctx, c.rdb,
		[]string{key, c.ks.vars(path), c.ks.vary(path), c.ks.gen(path)},
		raw, px.Milliseconds(), strings.Join(vary, ","), gen).Int()
	if err != nil {
		return false, nil, fmt.Errorf("store cache entry: %w", err)
	}
	return n == 1, raw, nil
}

// evictPathRedis deletes every variant of path.
func (c *Cache) evictPathRedis(ctx context.Context, path string) error {
	genPX := (c.maxLifetime + genGrace).Milliseconds()
	err := evictScript.Run(ctx, c.rdb, []string{c.ks.vars(path), c.ks.vary(path), c.ks.gen(path)}, genPX).Err()
	if err != nil {
		return fmt.Errorf("evict %s: %w", path, err)
	}
	return nil
}

// pathsWithPrefixes scans the path index for live paths under any prefix.
func (c *Cache) pathsWithPrefixes(ctx context.Context, prefixes []string, now time.Time) ([]string, error) {
	var out []string
	var cursor uint64
	for {
		kv, next, err := c.rdb.ZScan(ctx, c.ks.paths(), cursor, "", 512).Result()
		if err != nil {
			return nil, fmt.Errorf("scan path index: %w", err)
		}
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

// pathsWithTag reads the live paths stored under tag.
func (c *Cache) pathsWithTag(ctx context.Context, tag string, now time.Time) ([]string, error) {
	paths, err := c.rdb.ZRangeByScore(ctx, c.ks.tag(tag), &redis.ZRangeBy{
		Min: strconv.FormatInt(now.UnixMilli(), 10), Max: "+inf",
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("read tag index %s: %w", tag, err)
	}
	return paths, nil
}
