// Package rediscluster forms, repairs and scales a Redis Cluster with plain
// CLUSTER commands over go-redis: no redis-cli, no kubectl exec.
//
// Every operation takes the desired members (a StatefulSet's pods, or local
// processes in tests), observes what the nodes themselves report, and issues
// only the commands that move the cluster towards the goal, so each one is
// idempotent: re-running it on a converged cluster changes nothing and
// re-running it after an interruption finishes the job. Decisions are pure
// functions over a State snapshot (see Assess, PlanBalance, NextRequeue) so
// they can be tested without servers.
//
// What is never done automatically, because it could lose data, is listed
// in docs/redis-cluster.md: assigning slots that a failed node still claims,
// forgetting a node that owns slots, and scaling in while a leaving node is
// unreachable or the remaining primaries lack memory.
package rediscluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatehouse-dev/gatehouse/internal/redisinfo"
)

// Errors callers can branch on with errors.Is.
var (
	// ErrUnreachable: an operation needs a member that did not answer.
	ErrUnreachable = errors.New("member unreachable")
	// ErrUnsafe: the operation was refused because it could lose data.
	ErrUnsafe = errors.New("refused: would lose data")
	// ErrNotSettled: gossip did not converge within Admin.Settle; retry later.
	ErrNotSettled = errors.New("cluster has not settled")
)

// Member is one node the cluster should consist of.
type Member struct {
	// Name is the stable identity (a pod name).
	Name string
	// Addr is host:port to dial now (a pod IP). CLUSTER MEET needs an IP, so
	// a hostname is resolved first.
	Addr string
	// Announce is the stable hostname the node should announce to clients
	// (cluster-announce-hostname); empty leaves the node's setting alone.
	Announce string
	// BusPort is the cluster bus port; 0 means the Redis default, port+10000.
	BusPort int
}

// Spec is the desired shape of the cluster.
type Spec struct {
	Shards           int
	ReplicasPerShard int
}

// Nodes is the number of members the spec needs.
func (s Spec) Nodes() int { return s.Shards * (1 + s.ReplicasPerShard) }

// Admin runs cluster operations. The zero value works against nodes without
// a password; set fields to adjust.
type Admin struct {
	// Password authenticates to every node (and MIGRATE to the target).
	Password string
	// Dial returns a client for one node; nil uses redis.NewClient with
	// Password, short timeouts and no retries (operations are retried by the
	// caller as a whole, which is what makes them idempotent).
	Dial func(addr string) *redis.Client
	// Log receives one line per change made; nil discards.
	Log *slog.Logger
	// FailoverAfter is how long a primary must have been failed, with no
	// automatic failover, before Repair forces one. Default 30s.
	FailoverAfter time.Duration
	// ForgetAfter is how long a node that is no member must have been failed
	// before Repair forgets it. Default 5m.
	ForgetAfter time.Duration
	// Settle bounds each wait for gossip (a met node becoming known, a
	// failover completing). Default 15s.
	Settle time.Duration
	// MigrateBatch is the number of keys per MIGRATE. Default 100.
	MigrateBatch int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

func (a *Admin) log() *slog.Logger {
	if a.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return a.Log
}

func (a *Admin) now() time.Time {
	if a.Now == nil {
		return time.Now()
	}
	return a.Now()
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// conns caches one client per address for the duration of one operation.
type conns struct {
	a  *Admin
	mu sync.Mutex
	m  map[string]*redis.Client
}

func (a *Admin) open() *conns { return &conns{a: a, m: map[string]*redis.Client{}} }

func (c *conns) get(addr string) *redis.Client {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cl, ok := c.m[addr]; ok {
		return cl
	}
	var cl *redis.Client
	if c.a.Dial != nil {
		cl = c.a.Dial(addr)
	} else {
		cl = redis.NewClient(&redis.Options{
			Addr:            addr,
			Password:        c.a.Password,
			DialTimeout:     2 * time.Second,
			ReadTimeout:     10 * time.Second,
			WriteTimeout:    5 * time.Second,
			MaxRetries:      -1,
			PoolSize:        2,
			Protocol:        2,
			DisableIdentity: true,
		})
	}
	c.m[addr] = cl
	return cl
}

func (c *conns) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, cl := range c.m {
		_ = cl.Close()
	}
}

// Observe reads CLUSTER NODES, CLUSTER INFO, DBSIZE and INFO (the
// redisinfo.Sections) from every member concurrently. Unreachable members are recorded in the State
// (MemberState.Err), not returned as an error; Observe fails only when no
// member answered.
func (a *Admin) Observe(ctx context.Context, members []Member) (*State, error) {
	c := a.open()
	defer c.close()
	return a.observe(ctx, c, members)
}

func (a *Admin) observe(ctx context.Context, c *conns, members []Member) (*State, error) {
	out := make([]MemberState, len(members))
	var wg sync.WaitGroup
	for i, m := range members {
		wg.Go(func() { out[i] = a.observeOne(ctx, c, m) })
	}
	wg.Wait()
	s := newState(out, a.now())
	for _, m := range out {
		if m.Reachable() {
			return s, nil
		}
	}
	if err := ctx.Err(); err != nil {
		return s, fmt.Errorf("observe cluster: %w", err)
	}
	return s, fmt.Errorf("observe cluster: no member answered: %w", ErrUnreachable)
}

func (a *Admin) observeOne(ctx context.Context, c *conns, m Member) MemberState {
	ms := MemberState{Member: m}
	ip, err := resolve(ctx, m.Addr)
	if err != nil {
		ms.Err = err
		return ms
	}
	ms.IPAddr = ip
	cl := c.get(m.Addr)
	pipe := cl.Pipeline()
	id := pipe.ClusterMyID(ctx)
	nodes := pipe.ClusterNodes(ctx)
	info := pipe.ClusterInfo(ctx)
	size := pipe.DBSize(ctx)
	nodeInfo := pipe.Info(ctx, redisinfo.Sections...)
	if _, err := pipe.Exec(ctx); err != nil {
		ms.Err = fmt.Errorf("observe %s (%s): %w", m.Name, m.Addr, err)
		return ms
	}
	view, err := ParseNodes(nodes.Val())
	if err != nil {
		ms.Err = fmt.Errorf("observe %s: %w", m.Name, err)
		return ms
	}
	ni, err := redisinfo.Parse(nodeInfo.Val())
	if err != nil {
		ms.Err = fmt.Errorf("observe %s: %w", m.Name, err)
		return ms
	}
	ms.View, ms.Info, ms.Keys, ms.NodeInfo = view, ParseInfo(info.Val()), size.Val(), ni
	ms.UsedMemory, ms.Dataset, ms.MaxMemory = ni.Memory.Used, ni.Memory.Dataset, ni.Memory.Max
	ms.Synced = ni.Replication.Role == redisinfo.RolePrimary || (ni.Replication.LinkUp && !ni.Replication.SyncInProgress)
	ms.ID = id.Val()
	return ms
}

// resolve turns host:port into ip:port.
func resolve(ctx context.Context, addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("member address %q: %w", addr, err)
	}
	if net.ParseIP(host) != nil {
		return addr, nil
	}
	ips, err := net.DefaultResolver.LookupHost(ctx, host)
	if err != nil || len(ips) == 0 {
		return "", fmt.Errorf("resolve %s: %w", host, errors.Join(err, ErrUnreachable))
	}
	return net.JoinHostPort(ips[0], port), nil
}

// requireAll returns ErrUnreachable naming every member that did not answer.
func requireAll(s *State) error {
	var errs []error
	for _, m := range s.Members {
		if !m.Reachable() {
			errs = append(errs, fmt.Errorf("%s: %w", m.Name, m.Err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrUnreachable, errors.Join(errs...))
	}
	return nil
}

// permanentError stops poll: retrying cannot help.
type permanentError struct{ err error }

func (p permanentError) Error() string { return p.err.Error() }
func (p permanentError) Unwrap() error { return p.err }

func permanent(err error) error { return permanentError{err} }

// poll calls f until it succeeds, fails permanently, ctx ends or d passes.
func poll(ctx context.Context, d time.Duration, f func() error) error {
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if p, ok := errors.AsType[permanentError](err); ok {
			return p.err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w after %s: %w", ErrNotSettled, d, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
