package redisconn

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatehouse-dev/gatehouse/internal/redistest"
	"github.com/gatehouse-dev/gatehouse/sidecar/config"
)

func conn(mode config.RedisMode, addrs ...string) config.RedisConnection {
	c := config.Config{Redis: []config.RedisConnection{{Name: "r", Mode: mode, Addrs: addrs}}}
	c.Default()
	return c.Redis[0]
}

func TestStandaloneWithPasswordFromEnv(t *testing.T) {
	srv := redistest.StartStandalone(t)
	if _, err := redistest.Do(context.Background(), srv.Addr(), "CONFIG", "SET", "requirepass", "s3cret"); err != nil {
		t.Fatal(err)
	}
	c := conn(config.RedisStandalone, srv.Addr())
	c.PasswordEnv = "GATEHOUSE_TEST_REDIS_PASSWORD"
	c.DB = 3
	c.PoolSize = 4
	t.Setenv(c.PasswordEnv, "s3cret")
	client, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx := context.Background()
	if err := Ping(ctx, client); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if err := client.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	info, err := client.ClientInfo(ctx).Result()
	if err != nil || info.DB != 3 {
		t.Errorf("CLIENT INFO db = %+v, %v; want db 3", info, err)
	}
	opts := client.(*redis.Client).Options()
	if opts.DB != 3 || opts.PoolSize != 4 || opts.ReadTimeout != 200*time.Millisecond || opts.DialTimeout != time.Second || opts.MaxRetries != 1 {
		t.Errorf("options = db %d pool %d read %v dial %v retries %d", opts.DB, opts.PoolSize, opts.ReadTimeout, opts.DialTimeout, opts.MaxRetries)
	}

	// Wrong password: the client builds (connecting is lazy) but PING fails.
	t.Setenv(c.PasswordEnv, "wrong")
	bad, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	if err := Ping(ctx, bad); err == nil {
		t.Error("Ping with a wrong password succeeded")
	}
}

func TestPasswordEnvUnset(t *testing.T) {
	c := conn(config.RedisStandalone, "127.0.0.1:1")
	c.PasswordEnv = "GATEHOUSE_TEST_SURELY_UNSET"
	if _, err := New(c); err == nil {
		t.Fatal("New succeeded with an unset password variable")
	}
}

func TestTLSCAFileErrors(t *testing.T) {
	c := conn(config.RedisStandalone, "127.0.0.1:1")
	c.TLS = &config.RedisTLS{CAFile: t.TempDir() + "/missing.pem"}
	if _, err := New(c); err == nil {
		t.Fatal("New succeeded with a missing CA file")
	}
}

func TestPingFailsWhenStoppedAndRecovers(t *testing.T) {
	srv := redistest.StartStandalone(t)
	client, err := New(conn(config.RedisStandalone, srv.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx := context.Background()
	if err := Ping(ctx, client); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "ping fails", func() bool { return Ping(ctx, client) != nil })
	srv.Start(t)
	eventually(t, "ping recovers", func() bool { return Ping(ctx, client) == nil })
}

func TestCluster(t *testing.T) {
	cl := redistest.StartCluster(t)
	client, err := New(conn(config.RedisCluster, cl.Addrs()[0]))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if _, ok := client.(*redis.ClusterClient); !ok {
		t.Fatalf("Cluster mode gave %T", client)
	}
	ctx := context.Background()
	eventually(t, "cluster ping", func() bool { return Ping(ctx, client) == nil })
	// Keys in different slots work through one seed address.
	for _, k := range []string{"a", "b", "c", "d", "e"} {
		if err := client.Set(ctx, k, k, 0).Err(); err != nil {
			t.Fatalf("SET %s: %v", k, err)
		}
	}
	// Every primary is pinged: one stopped primary fails the check.
	if err := cl.Primaries[0].Stop(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "cluster ping fails with a primary down", func() bool { return Ping(ctx, client) != nil })
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
