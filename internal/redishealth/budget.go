package redishealth

import (
	"fmt"

	"github.com/gatehouse-dev/gatehouse/api/v1alpha1"
)

const (
	// PubSubPerSidecar is how many connections a sidecar holds to one node
	// outside its pool: the session revocation subscription and the
	// cache's sharded eviction subscription.
	PubSubPerSidecar = 2
	// AdminReserve is kept free on every node for the operator, people with
	// redis-cli and exporters, so the cluster stays manageable when the
	// sidecars use all they may.
	AdminReserve = 32
	// DefaultMaxClients is Redis' maxclients when nothing else is known.
	DefaultMaxClients = 10000
)

// BudgetInput is what the connection budget of one cluster depends on.
type BudgetInput struct {
	// Sidecars is the number of pods with the sidecar whose policies use
	// the cluster.
	Sidecars int
	// PoolSize is the pool size per node the spec asks for.
	PoolSize int
	// MaxClients is the lowest maxclients of any node; 0 when no node was
	// observed (DefaultMaxClients is assumed, or the configured value).
	MaxClients int64
	// Nodes and ReplicasPerShard give what the cluster itself needs on each
	// node: two cluster bus links to every other node and one connection
	// per replica, which Redis counts against maxclients too.
	Nodes, ReplicasPerShard int
}

// Budget is the decision: the pool size to render and the figures behind it.
type Budget struct {
	// PoolSize is what the sidecars' configuration gets: the asked size,
	// or less so that they fit; never below 1.
	PoolSize int
	// PerNode is Sidecars × (asked PoolSize + PubSubPerSidecar): the most
	// the sidecars could open to one node without the cap.
	PerNode int64
	// Available is maxclients less what the cluster needs for itself.
	Available int64
	// Capped: PoolSize is below the asked size. Exhausted: even a pool of
	// one does not fit.
	Capped, Exhausted bool
}

// PlanBudget caps the sidecars' pool size so that Sidecars × (pool +
// PubSubPerSidecar) fits in what a node accepts. Every sidecar keeps at
// least one pooled connection: a sidecar with none would fail every
// request, which is worse than a node refusing some connections.
func PlanBudget(in BudgetInput) Budget {
	maxClients := in.MaxClients
	if maxClients <= 0 {
		maxClients = DefaultMaxClients
	}
	reserved := int64(2*max(in.Nodes-1, 0)+in.ReplicasPerShard) + AdminReserve
	b := Budget{
		PoolSize:  max(in.PoolSize, 1),
		PerNode:   int64(in.Sidecars) * int64(max(in.PoolSize, 1)+PubSubPerSidecar),
		Available: max(maxClients-reserved, 0),
	}
	if in.Sidecars == 0 || b.PerNode <= b.Available {
		return b
	}
	fit := b.Available/int64(in.Sidecars) - PubSubPerSidecar
	b.Capped = true
	if fit < 1 {
		b.PoolSize, b.Exhausted = 1, true
		return b
	}
	b.PoolSize = int(fit)
	return b
}

// ConnectionBudget decides ConditionConnectionBudget.
func ConnectionBudget(b Budget, in BudgetInput) Verdict {
	switch {
	case b.Exhausted:
		return problem(v1alpha1.ReasonBudgetExhausted, []string{fmt.Sprintf(
			"%d sidecars need at least %d connections per node even with a pool of one, but the nodes accept %d; raise maxclients or split the pods over more clusters",
			in.Sidecars, int64(in.Sidecars)*(1+PubSubPerSidecar), b.Available)})
	case b.Capped:
		return problem(v1alpha1.ReasonPoolSizeCapped, []string{fmt.Sprintf(
			"%d sidecars × (pool %d + %d Pub/Sub) = %d connections per node exceed the %d the nodes accept; the sidecars' pool size is lowered to %d",
			in.Sidecars, in.PoolSize, PubSubPerSidecar, b.PerNode, b.Available, b.PoolSize)})
	}
	return asExpected
}
