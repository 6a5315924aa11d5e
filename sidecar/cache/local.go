package cache

import (
	"container/list"
	"slices"
	"strings"
	"sync"
	"time"
)

// local is the bounded in-process tier: an LRU capped in entries and bytes.
// It holds entries and Vary specs, both keyed by their Redis key.
//
// It is usable only while the invalidation subscription is live: disable
// drops everything and refuses new items until enable is called again after
// a (re)subscription, so the tier never serves what a missed broadcast evicted.
type local struct {
	mu         sync.Mutex
	maxEntries int
	maxBytes   int64
	ll         *list.List
	items      map[string]*list.Element
	byPath     map[string]map[string]struct{}
	bytes      int64
	enabled    bool
	// epoch counts evictions; a fill that read Redis before an eviction
	// must not land after it.
	epoch uint64
	m     *Metrics
}

type item struct {
	key, path string
	tags      []string
	e         *entry   // nil for a Vary spec
	vary      []string // the spec when e is nil
	size      int64
	expires   time.Time
}

func newLocal(maxEntries int, maxBytes int64, m *Metrics) *local {
	return &local{
		maxEntries: maxEntries, maxBytes: maxBytes,
		ll: list.New(), items: map[string]*list.Element{}, byPath: map[string]map[string]struct{}{},
		m: m,
	}
}

// snapshot returns whether the tier is usable and the epoch a later put must match.
func (l *local) snapshot() (bool, uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.enabled, l.epoch
}

func (l *local) get(key string, now time.Time) *item {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.enabled {
		return nil
	}
	el, ok := l.items[key]
	if !ok {
		return nil
	}
	it := el.Value.(*item)
	if !now.Before(it.expires) {
		l.remove(el, "expired")
		return nil
	}
	l.ll.MoveToFront(el)
	return it
}

// put adds it unless the tier is disabled or an eviction happened since epoch.
func (l *local) put(it *item, epoch uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.enabled || l.epoch != epoch || it.size > l.maxBytes {
		return false
	}
	if el, ok := l.items[it.key]; ok {
		l.remove(el, "replaced")
	}
	el := l.ll.PushFront(it)
	l.items[it.key] = el
	if l.byPath[it.path] == nil {
		l.byPath[it.path] = map[string]struct{}{}
	}
	l.byPath[it.path][it.key] = struct{}{}
	l.bytes += it.size
	l.m.localEntries.Inc()
	l.m.localBytes.Add(float64(it.size))
	for l.ll.Len() > l.maxEntries || l.bytes > l.maxBytes {
		l.remove(l.ll.Back(), "capacity")
	}
	return true
}

func (l *local) remove(el *list.Element, reason string) {
	it := el.Value.(*item)
	l.ll.Remove(el)
	delete(l.items, it.key)
	if keys := l.byPath[it.path]; keys != nil {
		delete(keys, it.key)
		if len(keys) == 0 {
			delete(l.byPath, it.path)
		}
	}
	l.bytes -= it.size
	l.m.localEntries.Dec()
	l.m.localBytes.Sub(float64(it.size))
	if reason != "replaced" {
		l.m.evictions.WithLabelValues("inprocess", reason).Inc()
	}
}

// evict drops every item of the named paths, of paths under the prefixes and
// of entries carrying the tags.
func (l *local) evict(t targets) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.epoch++
	for _, p := range t.Paths {
		for k := range l.byPath[p] {
			l.remove(l.items[k], "invalidation")
		}
	}
	if len(t.PathPrefixes) == 0 && len(t.Tags) == 0 {
		return
	}
	for el := l.ll.Front(); el != nil; {
		next := el.Next()
		if it := el.Value.(*item); t.matchesPrefix(it.path) || t.matchesTag(it.tags) {
			l.remove(el, "invalidation")
		}
		el = next
	}
}

// disable empties the tier and keeps it off until enable.
func (l *local) disable() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.epoch++
	l.enabled = false
	for el := l.ll.Front(); el != nil; el = l.ll.Front() {
		l.remove(el, "subscription-lost")
	}
}

func (l *local) enable() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.epoch++
	l.enabled = true
}

// targets names what an invalidation evicts.
type targets struct {
	Paths        []string `json:"paths,omitempty"`
	PathPrefixes []string `json:"pathPrefixes,omitempty"`
	Tags         []string `json:"tags,omitempty"`
}

func (t targets) empty() bool {
	return len(t.Paths) == 0 && len(t.PathPrefixes) == 0 && len(t.Tags) == 0
}

func (t targets) matchesPrefix(path string) bool {
	for _, p := range t.PathPrefixes {
		if strings.HasPrefix(path, p) {
			return true
		}
	}
	return false
}

// covers reports whether t evicts path, or entries carrying one of tags.
func (t targets) covers(path string, tags []string) bool {
	return slices.Contains(t.Paths, path) || t.matchesPrefix(path) || t.matchesTag(tags)
}

func (t targets) matchesTag(tags []string) bool {
	for _, want := range t.Tags {
		if slices.Contains(tags, want) {
			return true
		}
	}
	return false
}

func (t targets) union(o targets) targets {
	return targets{
		Paths:        append(slices.Clone(t.Paths), o.Paths...),
		PathPrefixes: append(slices.Clone(t.PathPrefixes), o.PathPrefixes...),
		Tags:         append(slices.Clone(t.Tags), o.Tags...),
	}
}
