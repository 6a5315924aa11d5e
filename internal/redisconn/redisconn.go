// Package redisconn builds go-redis clients from the sidecar's named
// connections (config.RedisConnection), so the proxy and the operator's
// tooling agree on timeouts, retries, TLS and credentials.
//
// Every feature shares the one client of its connection: a pod opens one
// pool per Redis deployment, never one per policy or per request.
package redisconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatehouse-dev/gatehouse/sidecar/config"
)

// Retry backoff bounds. They are short because a request is waiting: the
// whole budget of a command is about (maxRetries+1) × readTimeout, and a
// long backoff would only add to the latency a failure mode has to absorb.
const (
	minRetryBackoff = 8 * time.Millisecond
	maxRetryBackoff = 64 * time.Millisecond
)

// New returns a client for c, which must have been defaulted and validated
// (config.Load does both). Standalone yields a *redis.Client, Cluster a
// *redis.ClusterClient, Sentinel a failover *redis.Client. go-redis connects
// lazily, so New does not fail when Redis is down; readiness checks PING.
func New(c config.RedisConnection) (redis.UniversalClient, error) {
	password, err := password(c)
	if err != nil {
		return nil, fmt.Errorf("redis connection %q: %w", c.Name, err)
	}
	tlsConf, err := tlsConfig(c.TLS)
	if err != nil {
		return nil, fmt.Errorf("redis connection %q: %w", c.Name, err)
	}
	if len(c.Addrs) == 0 {
		return nil, fmt.Errorf("redis connection %q: no addresses", c.Name)
	}
	// One set of options, converted per mode, so the three modes cannot
	// drift apart in timeouts or retries.
	o := &redis.UniversalOptions{
		Addrs:           c.Addrs,
		MasterName:      c.MasterName,
		Username:        c.Username,
		Password:        password,
		DB:              c.DB,
		TLSConfig:       tlsConf,
		PoolSize:        c.PoolSize,
		DialTimeout:     c.DialTimeout.D(),
		ReadTimeout:     c.ReadTimeout.D(),
		WriteTimeout:    c.WriteTimeout.D(),
		MaxRetries:      c.MaxRetries,
		MinRetryBackoff: minRetryBackoff,
		MaxRetryBackoff: maxRetryBackoff,
		// Honour the request context's deadline on top of the timeouts.
		ContextTimeoutEnabled: true,
	}
	switch c.Mode {
	case config.RedisStandalone:
		return redis.NewClient(o.Simple()), nil
	case config.RedisCluster:
		return redis.NewClusterClient(o.Cluster()), nil
	case config.RedisSentinel:
		return redis.NewFailoverClient(o.Failover()), nil
	default:
		return nil, fmt.Errorf("redis connection %q: unknown mode %q", c.Name, c.Mode)
	}
}

// password reads the password from the environment variable the connection
// names. A named but unset variable is an error: it almost always means a
// missing Secret reference, which would otherwise surface as NOAUTH later.
func password(c config.RedisConnection) (string, error) {
	if c.PasswordEnv == "" {
		return "", nil
	}
	v, ok := os.LookupEnv(c.PasswordEnv)
	if !ok {
		return "", fmt.Errorf("password environment variable %s is not set", c.PasswordEnv)
	}
	return v, nil
}

func tlsConfig(t *config.RedisTLS) (*tls.Config, error) {
	if t == nil {
		return nil, nil
	}
	conf := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         t.ServerName,
		InsecureSkipVerify: t.InsecureSkipVerify, //nolint:gosec // documented as tests only
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read tls.caFile: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.caFile %s holds no PEM certificate", t.CAFile)
		}
		conf.RootCAs = pool
	}
	return conf, nil
}

// Pinger is what a readiness check needs of a client.
type Pinger interface {
	Ping(ctx context.Context) *redis.StatusCmd
}

// Ping checks that the deployment behind c answers. For a cluster it pings
// every primary, because a request may need any slot: one reachable node is
// not a healthy cluster.
func Ping(ctx context.Context, c Pinger) error {
	if cc, ok := c.(*redis.ClusterClient); ok {
		// ForEachMaster runs the callbacks concurrently and returns the first error.
		err := cc.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
			if err := n.Ping(ctx).Err(); err != nil {
				return fmt.Errorf("%s: %w", n.Options().Addr, err)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("ping cluster: %w", err)
		}
		return nil
	}
	if err := c.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	return nil
}

// RequestTimeout is how long a request may wait for one Redis exchange on
// c: the connection's read timeout, which the config documents as exactly
// that bound (default 200ms when unset). Features put it on the request's
// context so that, while Redis is down, go-redis' dial retries and backoff
// are cut short too and the policy's failure mode applies promptly.
func RequestTimeout(c redis.UniversalClient) time.Duration {
	var rt time.Duration
	switch c := c.(type) {
	case *redis.Client:
		rt = c.Options().ReadTimeout
	case *redis.ClusterClient:
		rt = c.Options().ReadTimeout
	}
	if rt <= 0 {
		return config.DefaultReadTimeout.D()
	}
	return rt
}
