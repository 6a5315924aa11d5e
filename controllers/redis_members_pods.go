package controllers

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gatehouse-dev/gatehouse/api/v1alpha1"
	"github.com/gatehouse-dev/gatehouse/internal/rediscluster"
	"github.com/gatehouse-dev/gatehouse/internal/redisnames"
)

// PodRedisMembers is the default RedisMemberSource: the pods of the
// cluster's StatefulSet, read from the manager's cache.
type PodRedisMembers struct {
	Client client.Client
}

// Members returns the pods that have an IP and are not being deleted, in
// ordinal order, so the lowest ordinals stay in a scale-in, as the
// StatefulSet removes the highest.
func (p PodRedisMembers) Members(ctx context.Context, rc *v1alpha1.RedisCluster) ([]rediscluster.Member, error) {
	var pods corev1.PodList
	if err := p.Client.List(ctx, &pods, client.InNamespace(rc.Namespace), client.MatchingLabels(redisLabels(rc.Name))); err != nil {
		return nil, fmt.Errorf("list pods of %s: %w", rc.Name, err)
	}
	return podMembers(rc, pods.Items), nil
}

// podMembers is the pure part of Members.
func podMembers(rc *v1alpha1.RedisCluster, pods []corev1.Pod) []rediscluster.Member {
	headless := redisnames.HeadlessService(rc.Name)
	type ordered struct {
		ord int
		m   rediscluster.Member
	}
	var out []ordered
	for _, pod := range pods {
		if pod.Status.PodIP == "" || pod.DeletionTimestamp != nil {
			continue
		}
		ord, ok := podOrdinal(rc.Name, pod.Name)
		if !ok {
			continue
		}
		out = append(out, ordered{ord, rediscluster.Member{
			Name:     pod.Name,
			Addr:     net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(redisnames.Port)),
			Announce: pod.Name + "." + headless + "." + rc.Namespace + ".svc",
			BusPort:  redisnames.BusPort,
		}})
	}
	slices.SortFunc(out, func(a, b ordered) int { return a.ord - b.ord })
	members := make([]rediscluster.Member, len(out))
	for i, o := range out {
		members[i] = o.m
	}
	return members
}

// podOrdinal parses the StatefulSet ordinal of "<cluster>-<n>".
func podOrdinal(cluster, pod string) (int, bool) {
	rest, ok := strings.CutPrefix(pod, cluster+"-")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(rest)
	return n, err == nil && n >= 0
}

// Restart deletes the member's pod; the StatefulSet recreates it with the
// same name and volume. The pod's SIGTERM lets redis-server save and
// close its files (terminationGracePeriodSeconds); a pod whose volume is
// an emptyDir comes back blank and is attached as a replica by Repair.
func (p PodRedisMembers) Restart(ctx context.Context, rc *v1alpha1.RedisCluster, m rediscluster.Member) error {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: rc.Namespace, Name: m.Name}}
	if err := p.Client.Delete(ctx, pod); err != nil {
		return fmt.Errorf("delete pod %s/%s: %w", rc.Namespace, m.Name, err)
	}
	return nil
}

// ClientAddress is the cluster's client Service.
func (PodRedisMembers) ClientAddress(rc *v1alpha1.RedisCluster) string {
	return net.JoinHostPort(redisnames.ClientService(rc.Name)+"."+rc.Namespace+".svc", strconv.Itoa(redisnames.Port))
}
