package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gatehouse-dev/gatehouse/api/v1alpha1"
	"github.com/gatehouse-dev/gatehouse/internal/rediscluster"
)

// redisNode is one local redis-server process standing in for one pod of
// the cluster's StatefulSet.
type redisNode struct {
	name      string
	port, bus int
	dir       string
	proc      *proc
}

func (n *redisNode) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(n.port)) }

// redisMembers describes the nodes to the operator's cluster code. They
// announce 127.0.0.1, so the MOVED redirects and CLUSTER SHARDS answers
// the sidecar's go-redis client follows stay on loopback.
func (d *demo) redisMembers() []rediscluster.Member {
	out := make([]rediscluster.Member, 0, len(d.redis))
	for _, n := range d.redis {
		out = append(out, rediscluster.Member{Name: n.name, Addr: n.addr(), Announce: "127.0.0.1", BusPort: n.bus})
	}
	return out
}

// startRedis runs the nodes with the redis.conf the operator rendered into
// the cluster's ConfigMap and the password from its Secret, then lets the
// operator form the cluster and waits for it to report Ready.
func (d *demo) startRedis(ctx context.Context) error {
	d.out.begin("Start a local Redis Cluster: 6 redis-server processes from the operator's redis.conf, formed by the operator")
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return fmt.Errorf("redis-server not found (hack/install-redis.sh installs it): %w", err)
	}
	conf, password, err := d.redisConfig(ctx)
	if err != nil {
		return err
	}
	d.password = password
	start := time.Now()
	for i := range 6 {
		n, err := d.startNode(ctx, bin, conf, fmt.Sprintf("%s-%d", redisName, i))
		if err != nil {
			return err
		}
		d.redis = append(d.redis, n)
	}
	d.out.ok("6 nodes answering on 127.0.0.1 ports %s", d.redisPorts())
	if err := d.formCluster(ctx); err != nil {
		return err
	}
	var rc v1alpha1.RedisCluster
	if err := d.k8s.Get(ctx, client.ObjectKey{Namespace: shopNamespace, Name: redisName}, &rc); err != nil {
		return fmt.Errorf("get RedisCluster: %w", err)
	}
	d.out.ok("RedisCluster %s Ready in %s: clusterState=%s, %d/16384 slots, %d ready nodes, clients use %s",
		redisName, time.Since(start).Round(100*time.Millisecond), rc.Status.ClusterState, rc.Status.SlotsAssigned, rc.Status.ReadyNodes, rc.Status.ClientService)
	return nil
}

// startNode starts one node on free loopback ports and waits until it
// answers. Ports are picked just before the process binds them; should
// another process take one in between, the node is retried on new ports.
func (d *demo) startNode(ctx context.Context, bin, conf, name string) (*redisNode, error) {
	n := &redisNode{name: name, dir: filepath.Join(d.tmp, "redis", name)}
	if err := os.MkdirAll(n.dir, 0o700); err != nil {
		return nil, fmt.Errorf("redis dir: %w", err)
	}
	path := filepath.Join(n.dir, "redis.conf")
	var err error
	for range 3 {
		if n.port, err = freePort(); err != nil {
			return nil, err
		}
		if n.bus, err = freePort(); err != nil {
			return nil, err
		}
		if err := os.WriteFile(path, []byte(nodeConfig(conf, n, d.password)), 0o600); err != nil {
			return nil, fmt.Errorf("write %s: %w", path, err)
		}
		if n.proc, err = d.procs.start(n.name, d.logPath(n.name), bin, []string{path}, nil); err != nil {
			return nil, err
		}
		cl := redis.NewClient(&redis.Options{Addr: n.addr(), Password: d.password, MaxRetries: -1, DialTimeout: time.Second})
		err = poll(ctx, 20*time.Second, func() error {
			if done, perr := n.proc.exited(); done {
				return fmt.Errorf("%s exited: %v (see %s)", n.name, perr, n.proc.log)
			}
			return cl.Ping(ctx).Err()
		})
		cl.Close()
		if err == nil {
			return n, nil
		}
		if done, _ := n.proc.exited(); !done || !strings.Contains(strings.Join(tail(n.proc.log, 20), "\n"), "Address already in use") {
			break
		}
	}
	return nil, fmt.Errorf("redis node %s: %w", n.name, err)
}

func (d *demo) redisPorts() string {
	ports := make([]string, 0, len(d.redis))
	for _, n := range d.redis {
		ports = append(ports, strconv.Itoa(n.port))
	}
	return strings.Join(ports, ",")
}

// nodeConfig is the operator's redis.conf adapted to a local process the
// way the StatefulSet adapts it to a pod: the port, cluster bus port and
// data directory lines are replaced in place (Redis acts on "dir" as it
// reads it, so a later line cannot override it), and what the pod passes on
// its command line (announce name, password) is appended. Everything else
// is the operator's file byte for byte.
func nodeConfig(conf string, n *redisNode, password string) string {
	replace := map[string]string{
		"port":         strconv.Itoa(n.port),
		"cluster-port": strconv.Itoa(n.bus),
		"dir":          n.dir,
	}
	var b strings.Builder
	for line := range strings.Lines(conf) {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		if v, ok := replace[strings.ToLower(name)]; ok {
			// redis.conf has no trailing comments: the note goes above.
			fmt.Fprintf(&b, "# hack/demo: was %s\n%s %s\n", strings.TrimSpace(line), name, v)
			delete(replace, strings.ToLower(name))
			continue
		}
		b.WriteString(line)
	}
	if !strings.HasSuffix(b.String(), "\n") {
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "\n# --- hack/demo: what the pod %s gets on its command line, and loopback only ---\n", n.name)
	for name, v := range replace {
		fmt.Fprintf(&b, "%s %s\n", name, v)
	}
	fmt.Fprintf(&b, "bind 127.0.0.1\ncluster-announce-hostname 127.0.0.1\ndaemonize no\nlogfile \"\"\n")
	fmt.Fprintf(&b, "requirepass %s\nmasterauth %s\n", password, password)
	return b.String()
}

// waitRedisReady waits until the RedisCluster reports Ready with a client
// address.
func (d *demo) waitRedisReady(ctx context.Context) error {
	return poll(ctx, 90*time.Second, func() error {
		var rc v1alpha1.RedisCluster
		if err := d.k8s.Get(ctx, client.ObjectKey{Namespace: shopNamespace, Name: redisName}, &rc); err != nil {
			return err
		}
		c := meta.FindStatusCondition(rc.Status.Conditions, v1alpha1.ConditionReady)
		if c == nil || c.Status != metav1.ConditionTrue || rc.Status.ClientService == "" {
			return fmt.Errorf("RedisCluster %s not Ready yet: %v", redisName, c)
		}
		return nil
	})
}

// secretValue reads one key of a Secret.
func (d *demo) secretValue(ctx context.Context, name, key string) (string, error) {
	var s corev1.Secret
	if err := d.k8s.Get(ctx, client.ObjectKey{Namespace: shopNamespace, Name: name}, &s); err != nil {
		return "", fmt.Errorf("secret %s: %w", name, err)
	}
	v, ok := s.Data[key]
	if !ok {
		return "", fmt.Errorf("secret %s has no key %q", name, key)
	}
	return string(v), nil
}
