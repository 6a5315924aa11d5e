package redisconn

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/gatehouse-dev/gatehouse/internal/redistest"
)

// BenchmarkDo is one call (a GET) through the layer against a local
// redis-server, next to the same GET on the bare go-redis client: the
// difference is what the layer costs per call.
func BenchmarkDo(b *testing.B) {
	srv := redistest.StartStandalone(b)
	c := newConn(b, opts(Standalone, srv.Addr()), NewMetrics(prometheus.NewRegistry()))
	f := c.Client("bench", true)
	ctx := context.Background()
	if err := c.client.Set(ctx, "k", "v", 0).Err(); err != nil {
		b.Fatal(err)
	}
	b.Run("layer", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var get *redis.StringCmd
			if err := f.Do(ctx, "get", "k", func(p *Pipe) { get = p.Get(ctx, "k") }); err != nil {
				b.Fatal(err)
			}
			_ = get
		}
	})
	b.Run("go-redis", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := c.client.Get(ctx, "k").Err(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
