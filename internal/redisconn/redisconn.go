// Package redisconn is the sidecar's one Redis access layer. Sessions, rate
// limits and the cache never talk to go-redis directly: they queue commands
// through a Client, and this package decides, once for all of them, what
// "Redis is misbehaving" means and what to do about it:
//
//   - the request deadline: every call made on a request's behalf waits at
//     most the connection's readTimeout (Conn.Deadline), or less where the
//     request's own deadline comes first, retries and dials included, and
//     is detached from the request's own cancellation so a client hanging
//     up never looks like a Redis failure;
//   - retries: go-redis' own (maxRetries, cluster redirects), always inside
//     that deadline;
//   - a breaker per Redis node: after a node failed to answer, it is asked
//     again only by one probe per cooldown, so an outage costs the failure
//     mode, not a deadline, per request;
//   - cluster topology: a connection error, a timeout, MOVED, ASK,
//     CLUSTERDOWN or TRYAGAIN asks go-redis to reload its slot map
//     (ReloadState); go-redis reloads by itself only on a redirect it
//     followed, never when a primary stops answering, so without this a
//     failover would go unnoticed until its 60 s periodic reload;
//   - durability: writes that must survive a failover wait (WAIT) for a
//     replica within the same deadline;
//   - metrics per feature, operation, node and result, and a health per
//     feature that /readyz shows.
//
// Commands go out in batches (Batch): groups of commands, each group bound
// to one hash slot, sent as one pipeline per node, the nodes concurrently.
// A feature's single call is a batch of one group; a request-scoped batch
// can carry the groups of several features.
//
// The package knows nothing of the sidecar's config schema: Options is its
// own, and the proxy converts the config's connections into it.
package redisconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Mode is how a connection reaches Redis.
type Mode string

// Modes.
const (
	Standalone Mode = "Standalone"
	Cluster    Mode = "Cluster"
	Sentinel   Mode = "Sentinel"
)

// Options describe one Redis deployment and how to reach it.
type Options struct {
	// Name identifies the connection in metrics, logs and /readyz.
	Name string
	// Mode is Standalone, Cluster or Sentinel.
	Mode Mode
	// Addrs are host:port seeds (any subset of a cluster's nodes; the
	// sentinels in Sentinel mode).
	Addrs []string
	// MasterName is the Sentinel master set (Sentinel only).
	MasterName string
	// Username is the ACL user, if any.
	Username string
	// PasswordEnv names the environment variable holding the password.
	PasswordEnv string
	// DB selects the logical database (Standalone and Sentinel only).
	DB int
	// TLS enables TLS when set.
	TLS *TLSOptions
	// PoolSize caps connections per node; 0 is go-redis' default.
	PoolSize int
	// DialTimeout, ReadTimeout and WriteTimeout bound one connect, one read
	// and one write. ReadTimeout must be positive: it is also the request
	// deadline (see Conn.Deadline).
	DialTimeout, ReadTimeout, WriteTimeout time.Duration
	// MaxRetries is how often go-redis retries a failed command.
	MaxRetries int
}

// TLSOptions configure TLS to Redis.
type TLSOptions struct {
	// CAFile is a PEM bundle to verify the server with; empty uses the system roots.
	CAFile string
	// ServerName overrides the name checked in the server certificate.
	ServerName string
	// InsecureSkipVerify disables verification (tests only).
	InsecureSkipVerify bool
}

// Retry backoff bounds. They are short because a request is waiting, and
// the deadline cuts retries short anyway.
const (
	minRetryBackoff = 8 * time.Millisecond
	maxRetryBackoff = 64 * time.Millisecond
)

// Conn is one Redis deployment as every feature of a sidecar uses it: one
// go-redis client (one pool per node), its breakers and its topology
// handling. Features get their view of it with Client.
type Conn struct {
	name     string
	mode     Mode
	client   redis.UniversalClient
	cluster  *redis.ClusterClient // nil unless Mode is Cluster
	deadline time.Duration
	// single labels the one node of a Standalone or Sentinel connection.
	single string
	nodes  breakers
	reload reloader
	m      *connMetrics
	log    *slog.Logger

	// unreplicated remembers nodes whose last WAIT saw no replica, so that
	// a shard without replicas does not make every durable write wait out
	// its deadline (see replicaWait).
	mu           sync.Mutex
	unreplicated map[string]time.Time

	// flights holds one coalescer per node address (coalesce.go).
	flights sync.Map
}

// New builds the connection described by o. go-redis connects lazily, so New
// succeeds while Redis is down; Ping tells whether it answers. m may be nil
// (no metrics); log may be nil.
func New(o Options, m *Metrics, log *slog.Logger) (*Conn, error) {
	if len(o.Addrs) == 0 {
		return nil, fmt.Errorf("redis connection %q: no addresses", o.Name)
	}
	if o.ReadTimeout <= 0 {
		return nil, fmt.Errorf("redis connection %q: readTimeout must be positive, got %s", o.Name, o.ReadTimeout)
	}
	password, err := password(o)
	if err != nil {
		return nil, fmt.Errorf("redis connection %q: %w", o.Name, err)
	}
	tlsConf, err := tlsConfig(o.TLS)
	if err != nil {
		return nil, fmt.Errorf("redis connection %q: %w", o.Name, err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// One set of options, converted per mode, so the modes cannot drift
	// apart in timeouts or retries.
	uo := &redis.UniversalOptions{
		Addrs:        o.Addrs,
		MasterName:   o.MasterName,
		Username:     o.Username,
		Password:     password,
		DB:           o.DB,
		TLSConfig:    tlsConf,
		PoolSize:     o.PoolSize,
		DialTimeout:  o.DialTimeout,
		ReadTimeout:  o.ReadTimeout,
		WriteTimeout: o.WriteTimeout,
		MaxRetries:   o.MaxRetries,
		// One dial per attempt: go-redis' default (5 dials, 100 ms apart)
		// makes a dead node cost half a second per command, and its slot-map
		// reloads, which run without a deadline, twice that per dead node
		// they try. Commands are retried by MaxRetries instead.
		DialerRetries:   1,
		MinRetryBackoff: minRetryBackoff,
		MaxRetryBackoff: maxRetryBackoff,
		// Honour the deadline of the call's context on top of the timeouts:
		// that is what bounds dial retries and backoff.
		ContextTimeoutEnabled: true,
	}
	c := &Conn{
		name:         o.Name,
		mode:         o.Mode,
		deadline:     o.ReadTimeout,
		m:            m.forConn(o.Name),
		log:          log.With("redis", o.Name),
		unreplicated: map[string]time.Time{},
	}
	switch o.Mode {
	case Standalone:
		c.client = redis.NewClient(uo.Simple())
		c.single = o.Addrs[0]
	case Cluster:
		c.cluster = redis.NewClusterClient(uo.Cluster())
		c.client = c.cluster
	case Sentinel:
		c.client = redis.NewFailoverClient(uo.Failover())
		c.single = "primary"
	default:
		return nil, fmt.Errorf("redis connection %q: unknown mode %q", o.Name, o.Mode)
	}
	c.nodes.m = c.m
	c.reload.c = c
	return c, nil
}

// Name is the connection's name.
func (c *Conn) Name() string { return c.name }

// Deadline is how long one request phase may wait for this connection: its
// read timeout. The config documents readTimeout as exactly that bound, and
// it is the one definition every feature uses (see Phase).
func (c *Conn) Deadline() time.Duration { return c.deadline }

// Sharded reports whether broadcasts use sharded Pub/Sub (a cluster).
func (c *Conn) Sharded() bool { return c.cluster != nil }

// Close closes the client and its pools.
func (c *Conn) Close() error { return c.client.Close() }

// Ping checks that the deployment answers. For a cluster it pings every
// primary, because a request may need any slot: one reachable node is not a
// healthy cluster.
func (c *Conn) Ping(ctx context.Context) error {
	if c.cluster != nil {
		// ForEachMaster reloads the slot map first and runs the callbacks
		// concurrently, returning the first error.
		err := c.cluster.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
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
	if err := c.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	return nil
}

// phaseKey marks a context as a request phase of one connection; its value
// is the phase's *phase.
type phaseKey struct{ c *Conn }

// phase is what a request phase's calls need to know besides their context.
type phase struct {
	// bound is the connection's own deadline for the phase: its start plus
	// readTimeout. A call whose deadline came before bound ran out of the
	// caller's time (a gRPC call's grpc-timeout), and its timeout says
	// nothing about the node (see settle).
	bound time.Time
}

// Phase returns the context for one request phase on c: detached from ctx's
// cancellation (a client that hangs up is not a Redis failure and must not
// open a breaker for everyone) and bounded by Deadline, or by ctx's own
// deadline where that comes first: a call never waits on Redis past the
// time its caller was given. Calls made with the returned context share
// that one deadline; calls made with any other context get a phase of
// their own. Always call cancel.
func (c *Conn) Phase(ctx context.Context) (context.Context, context.CancelFunc) {
	if ctx.Value(phaseKey{c}) != nil {
		return ctx, func() {}
	}
	bound := time.Now().Add(c.deadline)
	dl := bound
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	ctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), dl)
	return context.WithValue(ctx, phaseKey{c}, &phase{bound: bound}), cancel
}

// phaseOf returns the phase of a context made by Phase.
func (c *Conn) phaseOf(ctx context.Context) *phase {
	p, _ := ctx.Value(phaseKey{c}).(*phase)
	if p == nil {
		return &phase{bound: deadlineOf(ctx)}
	}
	return p
}

// password reads the password from the environment variable o names. A named
// but unset variable is an error: it almost always means a missing Secret
// reference, which would otherwise surface as NOAUTH later.
func password(o Options) (string, error) {
	if o.PasswordEnv == "" {
		return "", nil
	}
	v, ok := os.LookupEnv(o.PasswordEnv)
	if !ok {
		return "", fmt.Errorf("password environment variable %s is not set", o.PasswordEnv)
	}
	return v, nil
}

func tlsConfig(t *TLSOptions) (*tls.Config, error) {
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

// ErrUnavailable is wrapped by every error that means Redis could not
// answer: the node was unreachable, timed out, is in its breaker's cooldown,
// or the cluster is failing over. Features apply their failure mode on it.
var ErrUnavailable = errors.New("redis unavailable")

// ErrNodeAvoided is wrapped, with ErrUnavailable, by the error of a call
// that was not sent because its node failed within the last breaker
// cooldown. Such a call cost no wait; callers need not log it.
var ErrNodeAvoided = errors.New("node failed recently; not asked again before its breaker's cooldown (100ms) ends")
