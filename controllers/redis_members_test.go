package controllers

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/gatehouse-dev/gatehouse/api/v1alpha1"
	"github.com/gatehouse-dev/gatehouse/internal/rediscluster"
)

func TestPodMembers(t *testing.T) {
	pod := func(name, ip string, deleting bool) corev1.Pod {
		p := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop"}, Status: corev1.PodStatus{PodIP: ip}}
		if deleting {
			p.DeletionTimestamp = new(metav1.Now())
		}
		return p
	}
	rc := testCluster(nil)
	got := podMembers(rc, []corev1.Pod{
		pod("sessions-10", "10.0.0.10", false),
		pod("sessions-2", "10.0.0.2", false),
		pod("sessions-0", "10.0.0.1", false),
		pod("sessions-1", "", false),         // no IP yet
		pod("sessions-3", "10.0.0.3", true),  // terminating
		pod("sessions-x", "10.0.0.9", false), // not a StatefulSet ordinal
		pod("other-0", "10.0.0.8", false),    // another cluster's name
		pod("fe80-pod", "fe80::1", false),    // not ours either
	})
	member := func(ord int, ip string) rediscluster.Member {
		name := fmt.Sprintf("sessions-%d", ord)
		return rediscluster.Member{Name: name, Addr: ip + ":6379", Announce: name + ".sessions-nodes.shop.svc", BusPort: 16379}
	}
	want := []rediscluster.Member{member(0, "10.0.0.1"), member(2, "10.0.0.2"), member(10, "10.0.0.10")}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("members (-want +got):\n%s", diff)
	}
	if got := (PodRedisMembers{}).ClientAddress(rc); got != "sessions-client.shop.svc:6379" {
		t.Errorf("client address = %s", got)
	}
	ipv6 := podMembers(rc, []corev1.Pod{pod("sessions-0", "fd00::1", false)})
	if ipv6[0].Addr != "[fd00::1]:6379" {
		t.Errorf("IPv6 address = %s", ipv6[0].Addr)
	}
}

func TestLocalRedisMembers(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fallback := []rediscluster.Member{{Name: "a", Addr: "127.0.0.1:7000"}, {Name: "b", Addr: "127.0.0.1:7001"}}
	l := NewLocalRedisMembers(fallback)
	q := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[reconcile.Request]())
	defer q.ShutDown()
	if err := l.Start(ctx, q); err != nil {
		t.Fatal(err)
	}
	rc := testCluster(nil)
	key := types.NamespacedName{Namespace: rc.Namespace, Name: rc.Name}
	members := func() []rediscluster.Member {
		m, err := l.Members(ctx, rc)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}

	if diff := cmp.Diff(fallback, members()); diff != "" {
		t.Errorf("fallback (-want +got):\n%s", diff)
	}
	if got := l.ClientAddress(rc); got != "127.0.0.1:7000" {
		t.Errorf("client address = %s", got)
	}

	l.Set(key, nil)
	if got := members(); len(got) != 0 {
		t.Errorf("unavailable cluster has members %v", got)
	}
	if got := l.ClientAddress(rc); got != "" {
		t.Errorf("client address of an unavailable cluster = %q", got)
	}
	if q.Len() != 1 {
		t.Fatalf("Set enqueued %d requests, want 1", q.Len())
	}
	req, _ := q.Get()
	q.Done(req)
	if req.NamespacedName != key {
		t.Errorf("enqueued %v, want %v", req, key)
	}

	l.ClientAddressOf = PodRedisMembers{}.ClientAddress
	if got := l.ClientAddress(rc); got != "sessions-client.shop.svc:6379" {
		t.Errorf("client address with ClientAddressOf = %q", got)
	}
	l.ClientAddressOf = nil

	l.Delete(key)
	if diff := cmp.Diff(fallback, members()); diff != "" {
		t.Errorf("after Delete (-want +got):\n%s", diff)
	}

	// Concurrent Set, Delete and Members (run with -race).
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			other := &v1alpha1.RedisCluster{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: fmt.Sprint(i)}}
			k := types.NamespacedName{Namespace: "ns", Name: fmt.Sprint(i)}
			for range 100 {
				l.Set(k, fallback[:1])
				if _, err := l.Members(ctx, other); err != nil {
					t.Error(err)
				}
				l.Delete(k)
			}
		})
	}
	wg.Wait()

	// A stopped controller's queue no longer receives requests.
	cancel()
	deadline := time.Now().Add(10 * time.Second)
	for {
		l.mu.Lock()
		n := len(l.queues)
		l.mu.Unlock()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d queues still registered after the context ended", n)
		}
		time.Sleep(time.Millisecond)
	}
}
