package redishealth

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gatehouse-dev/gatehouse/api/v1alpha1"
)

func TestPlanBudget(t *testing.T) {
	// A 3+3 cluster reserves 2 bus links to each of 5 peers, 1 replica
	// connection and AdminReserve: 10 + 1 + 32 = 43.
	const reserved = 43
	tests := []struct {
		name     string
		in       BudgetInput
		want     Budget
		status   metav1.ConditionStatus
		reason   string
		mentions []string
	}{
		{
			name:   "no sidecars",
			in:     BudgetInput{PoolSize: 20, MaxClients: 10000, Nodes: 6, ReplicasPerShard: 1},
			want:   Budget{PoolSize: 20, Available: 10000 - reserved},
			status: metav1.ConditionFalse, reason: v1alpha1.ReasonAsExpected,
		},
		{
			name:   "fits",
			in:     BudgetInput{Sidecars: 100, PoolSize: 20, MaxClients: 10000, Nodes: 6, ReplicasPerShard: 1},
			want:   Budget{PoolSize: 20, PerNode: 2200, Available: 10000 - reserved},
			status: metav1.ConditionFalse, reason: v1alpha1.ReasonAsExpected,
		},
		{
			name:   "exactly fits",
			in:     BudgetInput{Sidecars: 10, PoolSize: 20, MaxClients: 220 + reserved, Nodes: 6, ReplicasPerShard: 1},
			want:   Budget{PoolSize: 20, PerNode: 220, Available: 220},
			status: metav1.ConditionFalse, reason: v1alpha1.ReasonAsExpected,
		},
		{
			// 1000 pods × 22 = 22000 > 9957: each gets 9957/1000 - 2 = 7.
			name:   "capped",
			in:     BudgetInput{Sidecars: 1000, PoolSize: 20, MaxClients: 10000, Nodes: 6, ReplicasPerShard: 1},
			want:   Budget{PoolSize: 7, PerNode: 22000, Available: 9957, Capped: true},
			status: metav1.ConditionTrue, reason: v1alpha1.ReasonPoolSizeCapped,
			mentions: []string{"1000 sidecars × (pool 20 + 2 Pub/Sub) = 22000", "9957", "lowered to 7"},
		},
		{
			name:   "one over: capped by one",
			in:     BudgetInput{Sidecars: 10, PoolSize: 20, MaxClients: 219 + reserved, Nodes: 6, ReplicasPerShard: 1},
			want:   Budget{PoolSize: 19, PerNode: 220, Available: 219, Capped: true},
			status: metav1.ConditionTrue, reason: v1alpha1.ReasonPoolSizeCapped,
		},
		{
			name:   "exhausted: even one connection each does not fit",
			in:     BudgetInput{Sidecars: 5000, PoolSize: 20, MaxClients: 10000, Nodes: 6, ReplicasPerShard: 1},
			want:   Budget{PoolSize: 1, PerNode: 110000, Available: 9957, Capped: true, Exhausted: true},
			status: metav1.ConditionTrue, reason: v1alpha1.ReasonBudgetExhausted,
			mentions: []string{"5000 sidecars need at least 15000"},
		},
		{
			name:   "maxclients unknown: Redis' default",
			in:     BudgetInput{Sidecars: 1, PoolSize: 20, Nodes: 6, ReplicasPerShard: 1},
			want:   Budget{PoolSize: 20, PerNode: 22, Available: DefaultMaxClients - reserved},
			status: metav1.ConditionFalse, reason: v1alpha1.ReasonAsExpected,
		},
		{
			name:   "maxclients below the cluster's own needs",
			in:     BudgetInput{Sidecars: 1, PoolSize: 20, MaxClients: 10, Nodes: 6, ReplicasPerShard: 1},
			want:   Budget{PoolSize: 1, PerNode: 22, Available: 0, Capped: true, Exhausted: true},
			status: metav1.ConditionTrue, reason: v1alpha1.ReasonBudgetExhausted,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := PlanBudget(tt.in)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("PlanBudget (-want +got):\n%s", diff)
			}
			if got.Capped && int64(tt.in.Sidecars)*int64(got.PoolSize+PubSubPerSidecar) > got.Available && !got.Exhausted {
				t.Errorf("capped pool %d still exceeds the budget", got.PoolSize)
			}
			check(t, ConnectionBudget(got, tt.in), tt.status, tt.reason, tt.mentions...)
		})
	}
}
