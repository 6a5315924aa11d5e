package redisconn

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatehouse-dev/gatehouse/sidecar/config"
)

func TestRequestTimeoutFollowsTheReadTimeout(t *testing.T) {
	tests := []struct {
		name   string
		client redis.UniversalClient
		want   time.Duration
	}{
		{"standalone", redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", ReadTimeout: 150 * time.Millisecond}), 150 * time.Millisecond},
		{"cluster", redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}, ReadTimeout: 75 * time.Millisecond}), 75 * time.Millisecond},
		{"unset uses the documented default", redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", ReadTimeout: -1}), 200 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer tt.client.Close()
			if got := RequestTimeout(tt.client); got != tt.want {
				t.Errorf("RequestTimeout = %v, want %v", got, tt.want)
			}
		})
	}
}

// Every mode gets the same timeouts, retries and context handling.
func TestNewAppliesOptionsInEveryMode(t *testing.T) {
	base := config.RedisConnection{
		Name: "r", Addrs: []string{"127.0.0.1:1"}, MasterName: "m", PoolSize: 7,
		DialTimeout: config.Duration(time.Second), ReadTimeout: config.Duration(111 * time.Millisecond),
		WriteTimeout: config.Duration(222 * time.Millisecond), MaxRetries: 3,
	}
	type got struct {
		PoolSize, MaxRetries int
		Read, Write          time.Duration
		ContextTimeout       bool
	}
	want := got{7, 3, 111 * time.Millisecond, 222 * time.Millisecond, true}
	for _, mode := range []config.RedisMode{config.RedisStandalone, config.RedisCluster, config.RedisSentinel} {
		t.Run(string(mode), func(t *testing.T) {
			c := base
			c.Mode = mode
			client, err := New(c)
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			var g got
			switch cl := client.(type) {
			case *redis.Client:
				o := cl.Options()
				g = got{o.PoolSize, o.MaxRetries, o.ReadTimeout, o.WriteTimeout, o.ContextTimeoutEnabled}
			case *redis.ClusterClient:
				o := cl.Options()
				g = got{o.PoolSize, o.MaxRetries, o.ReadTimeout, o.WriteTimeout, o.ContextTimeoutEnabled}
			default:
				t.Fatalf("unexpected client type %T", client)
			}
			if g != want {
				t.Errorf("options = %+v, want %+v", g, want)
			}
		})
	}
}
