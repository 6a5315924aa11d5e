package controllers

import (
	"context"
	"errors"

	"github.com/gatehouse-dev/gatehouse/api/v1alpha1"
	"github.com/gatehouse-dev/gatehouse/internal/rediscluster"
)

// RedisMemberSource tells the RedisCluster reconciler which redis-server
// nodes make up a cluster and how clients reach it. In Kubernetes the nodes
// are the pods of the cluster's StatefulSet (the default source); the local
// demo and the envtest suite run real redis-server processes on loopback
// instead, so the same reconciler and the same cluster operations form and
// repair them.
type RedisMemberSource interface {
	// Members returns the nodes of rc that exist now, in ordinal order.
	Members(ctx context.Context, rc *v1alpha1.RedisCluster) ([]rediscluster.Member, error)
	// ClientAddress is the host:port sidecars connect to (any node of the
	// cluster; go-redis discovers the rest).
	ClientAddress(rc *v1alpha1.RedisCluster) string
	// Restart restarts one node, keeping its identity and data directory,
	// for the maintenance window's fragmentation restarts. It may return
	// before the node is back: the reconciler only goes on once the
	// cluster has converged again. ErrRestartUnsupported: the source
	// cannot restart nodes.
	Restart(ctx context.Context, rc *v1alpha1.RedisCluster, m rediscluster.Member) error
}

// ErrRestartUnsupported is returned by a member source that cannot restart
// nodes (a LocalRedisMembers without RestartMember).
var ErrRestartUnsupported = errors.New("the member source cannot restart nodes")
