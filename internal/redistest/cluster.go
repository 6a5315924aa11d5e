package redistest

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// formTimeout bounds how long a new cluster may take to report cluster_state:ok.
const formTimeout = 30 * time.Second

// Cluster is a formed Redis Cluster: Primaries[i] serves a third of the slots
// and Replicas[i] replicates it.
type Cluster struct {
	Primaries []*Server
	Replicas  []*Server
}

// Nodes returns every node, primaries first.
func (c *Cluster) Nodes() []*Server {
	return append(append([]*Server{}, c.Primaries...), c.Replicas...)
}

// Addrs returns the addresses of every node, usable as ClusterOptions.Addrs.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, 0, len(c.Nodes()))
	for _, n := range c.Nodes() {
		addrs = append(addrs, n.Addr())
	}
	return addrs
}

// StartCluster starts six nodes and forms a cluster of three primaries with one
// replica each, using plain CLUSTER commands (independent of the operator's
// own bootstrap code, which has tests of its own). It returns once every node
// reports cluster_state:ok and knows all six members.
func StartCluster(t TB, extra ...string) *Cluster {
	t.Helper()
	nodes := StartNodes(t, 6, extra...)
	c := &Cluster{Primaries: nodes[:3], Replicas: nodes[3:]}
	ctx, cancel := context.WithTimeout(context.Background(), formTimeout)
	defer cancel()
	if err := c.form(ctx); err != nil {
		t.Fatalf("form redis cluster: %v", err)
	}
	return c
}

func (c *Cluster) form(ctx context.Context) error {
	first := c.Primaries[0]
	for _, n := range c.Nodes()[1:] {
		if _, err := Do(ctx, n.Addr(), "CLUSTER", "MEET", "127.0.0.1", strconv.Itoa(first.Port), strconv.Itoa(first.BusPort)); err != nil {
			return fmt.Errorf("meet %s: %w", n.Addr(), err)
		}
	}
	const slots = 16384
	for i, p := range c.Primaries {
		lo, hi := i*slots/len(c.Primaries), (i+1)*slots/len(c.Primaries)-1
		if _, err := Do(ctx, p.Addr(), "CLUSTER", "ADDSLOTSRANGE", strconv.Itoa(lo), strconv.Itoa(hi)); err != nil {
			return fmt.Errorf("assign slots %d-%d to %s: %w", lo, hi, p.Addr(), err)
		}
	}
	for i, r := range c.Replicas {
		id, err := Do(ctx, c.Primaries[i].Addr(), "CLUSTER", "MYID")
		if err != nil {
			return fmt.Errorf("id of %s: %w", c.Primaries[i].Addr(), err)
		}
		// The replica must have learnt of its primary through gossip first.
		if err := poll(ctx, func() error {
			_, err := Do(ctx, r.Addr(), "CLUSTER", "REPLICATE", id)
			return err
		}); err != nil {
			return fmt.Errorf("replicate %s -> %s: %w", r.Addr(), c.Primaries[i].Addr(), err)
		}
	}
	return c.WaitHealthy(ctx)
}

// WaitHealthy waits until every running node reports cluster_state:ok and
// knows every other node, and every replica's link to its primary is up.
func (c *Cluster) WaitHealthy(ctx context.Context) error {
	for _, n := range c.Nodes() {
		if !n.Running() {
			continue
		}
		if err := poll(ctx, func() error {
			info, err := Do(ctx, n.Addr(), "CLUSTER", "INFO")
			if err != nil {
				return err
			}
			if !strings.Contains(info, "cluster_state:ok") {
				return fmt.Errorf("%s: cluster_state not ok", n.Addr())
			}
			if !strings.Contains(info, "cluster_known_nodes:"+strconv.Itoa(len(c.Nodes()))) {
				return fmt.Errorf("%s: does not know all nodes yet", n.Addr())
			}
			// A replica that has not synced yet would lose every write on a
			// failover, silently weakening failover tests.
			repl, err := Do(ctx, n.Addr(), "INFO", "replication")
			if err != nil {
				return err
			}
			if strings.Contains(repl, "role:slave") && !strings.Contains(repl, "master_link_status:up") {
				return fmt.Errorf("%s: replica not yet in sync with its primary", n.Addr())
			}
			return nil
		}); err != nil {
			return err
		}
	}
	return nil
}

func poll(ctx context.Context, f func() error) error {
	for {
		err := f()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// RedisCLI runs redis-cli, for tests that want to compare against the
// reference client. It fails the test when redis-cli is missing.
func RedisCLI(t TB, args ...string) string {
	t.Helper()
	out, err := exec.Command("redis-cli", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli %v: %v\n%s", args, err, out)
	}
	return string(out)
}
