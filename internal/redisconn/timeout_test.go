package redisconn

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
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
