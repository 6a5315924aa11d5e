package session

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatehouse-dev/gatehouse/internal/redistest"
	"github.com/gatehouse-dev/gatehouse/sidecar/config"
)

// deadlineSpy is the real client, recording the deadline of each lookup.
type deadlineSpy struct {
	store
	mu        sync.Mutex
	remaining []time.Duration
}

func (s *deadlineSpy) GetEx(ctx context.Context, key string, expiration time.Duration) *redis.StringCmd {
	s.mu.Lock()
	if dl, ok := ctx.Deadline(); ok {
		s.remaining = append(s.remaining, time.Until(dl))
	} else {
		s.remaining = append(s.remaining, -1)
	}
	s.mu.Unlock()
	return s.store.GetEx(ctx, key, expiration)
}

// A lookup waits for Redis at most the connection's read timeout: during an
// outage protected paths answer 503 at once, rather than after go-redis has
// retried its dials.
func TestLookupIsBoundedByTheReadTimeout(t *testing.T) {
	srv := redistest.StartStandalone(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), ReadTimeout: 123 * time.Millisecond})
	defer rdb.Close()
	b := &backend{name: "standalone", rdb: rdb}
	h := newHarness(t, b, config.SessionPolicy{TTL: config.Duration(time.Minute), Sliding: true})
	tok := h.create("ivan", nil, 0)
	spy := &deadlineSpy{store: h.m.rdb}
	h.m.rdb = spy
	if w := h.get("/api", tok); w.Code != http.StatusOK {
		t.Fatalf("lookup: %d %s", w.Code, w.Body)
	}
	if len(spy.remaining) != 1 {
		t.Fatalf("GETEX calls = %d, want 1", len(spy.remaining))
	}
	if got := spy.remaining[0]; got <= 0 || got > 123*time.Millisecond {
		t.Errorf("lookup deadline %v ahead, want within the 123ms read timeout", got)
	}
}
