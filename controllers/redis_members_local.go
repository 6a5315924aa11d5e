package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/gatehouse-dev/gatehouse/api/v1alpha1"
	"github.com/gatehouse-dev/gatehouse/internal/rediscluster"
)

// LocalRedisMembers is a RedisMemberSource for redis-server processes that
// run outside Kubernetes: the envtest suite and the local demo. It maps a
// RedisCluster (namespace/name) to its nodes, with a default for clusters
// that have no entry.
//
// The reconciler authenticates with the password from the cluster's Secret,
// exactly as in Kubernetes, so local nodes must run with that password
// (requirepass and masterauth); give the RedisCluster a passwordSecretRef
// to a Secret holding it.
//
// Kubernetes cannot watch local processes, so LocalRedisMembers is also a
// controller-runtime source: Set and Delete enqueue the affected cluster,
// the way a pod event would.
type LocalRedisMembers struct {
	// ClientAddressOf, when set before the source is used, gives the
	// address reported as status.clientService (for example the in-cluster
	// Service name, PodRedisMembers.ClientAddress); nil reports the first
	// node's address, which local sidecars can dial.
	ClientAddressOf func(*v1alpha1.RedisCluster) string

	// RestartMember, when set before the source is used, restarts one
	// local process with its directory (nodes.conf) intact; nil makes
	// Restart return ErrRestartUnsupported. The tests set it to
	// redistest.Server.Restart.
	RestartMember func(ctx context.Context, m rediscluster.Member) error

	mu       sync.Mutex
	clusters map[types.NamespacedName][]rediscluster.Member
	fallback []rediscluster.Member
	queues   []workqueue.TypedRateLimitingInterface[reconcile.Request]
}

// NewLocalRedisMembers returns a source that maps every cluster without an
// entry to fallback (nil: no members).
func NewLocalRedisMembers(fallback []rediscluster.Member) *LocalRedisMembers {
	return &LocalRedisMembers{clusters: map[types.NamespacedName][]rediscluster.Member{}, fallback: slices.Clone(fallback)}
}

// Set makes members the nodes of the named cluster; an empty (non-nil)
// slice makes the cluster have no nodes, i.e. unavailable.
func (l *LocalRedisMembers) Set(key types.NamespacedName, members []rediscluster.Member) {
	if members == nil {
		members = []rediscluster.Member{}
	}
	l.mu.Lock()
	l.clusters[key] = slices.Clone(members)
	queues := slices.Clone(l.queues)
	l.mu.Unlock()
	notify(queues, key)
}

// Delete returns the named cluster to the fallback nodes.
func (l *LocalRedisMembers) Delete(key types.NamespacedName) {
	l.mu.Lock()
	delete(l.clusters, key)
	queues := slices.Clone(l.queues)
	l.mu.Unlock()
	notify(queues, key)
}

func notify(queues []workqueue.TypedRateLimitingInterface[reconcile.Request], key types.NamespacedName) {
	for _, q := range queues {
		q.Add(reconcile.Request{NamespacedName: key})
	}
}

// Members implements RedisMemberSource.
func (l *LocalRedisMembers) Members(_ context.Context, rc *v1alpha1.RedisCluster) ([]rediscluster.Member, error) {
	return l.lookup(rc), nil
}

func (l *LocalRedisMembers) lookup(rc *v1alpha1.RedisCluster) []rediscluster.Member {
	l.mu.Lock()
	defer l.mu.Unlock()
	if m, ok := l.clusters[types.NamespacedName{Namespace: rc.Namespace, Name: rc.Name}]; ok {
		return slices.Clone(m)
	}
	return slices.Clone(l.fallback)
}

// ClientAddress is ClientAddressOf(rc), else the first node's address
// (go-redis discovers the rest), empty when the cluster has no nodes.
func (l *LocalRedisMembers) ClientAddress(rc *v1alpha1.RedisCluster) string {
	if l.ClientAddressOf != nil {
		return l.ClientAddressOf(rc)
	}
	m := l.lookup(rc)
	if len(m) == 0 {
		return ""
	}
	return m[0].Addr
}

// Restart implements RedisMemberSource with RestartMember.
func (l *LocalRedisMembers) Restart(ctx context.Context, _ *v1alpha1.RedisCluster, m rediscluster.Member) error {
	if l.RestartMember == nil {
		return ErrRestartUnsupported
	}
	if err := l.RestartMember(ctx, m); err != nil {
		return fmt.Errorf("restart %s: %w", m.Name, err)
	}
	return nil
}

// Start implements source.Source: the controller's queue receives a request
// whenever Set or Delete changes a cluster's nodes, until ctx ends.
func (l *LocalRedisMembers) Start(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
	if q == nil {
		return errors.New("local redis members: nil queue")
	}
	l.mu.Lock()
	l.queues = append(l.queues, q)
	l.mu.Unlock()
	context.AfterFunc(ctx, func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.queues = slices.DeleteFunc(l.queues, func(x workqueue.TypedRateLimitingInterface[reconcile.Request]) bool { return x == q })
	})
	return nil
}
