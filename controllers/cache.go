package controllers

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// CacheOptions narrows what the manager's informers hold. The operator
// watches Pods, ConfigMaps and Secrets cluster-wide; on a cluster with thousands of
// pods, caching them whole would cost far more memory than the operator
// itself. The manager binary, the envtest suite and the demo all use it.
func CacheOptions() cache.Options {
	return cache.Options{
		ByObject: map[client.Object]cache.ByObject{
			// Only the ConfigMaps the operator writes: the sidecar
			// configuration and each RedisCluster's redis.conf. Removing the
			// label from one makes it look deleted, and it is re-applied.
			&corev1.ConfigMap{}: {Label: labels.SelectorFromSet(labels.Set{LabelManagedBy: ManagedByValue})},
			// Only the Redis password Secrets: the generated and auth ones
			// (which the operator labels) and users' (which they label).
			// Every other Secret of the cluster stays out of the
			// operator's memory.
			&corev1.Secret{}: {Label: labels.SelectorFromSet(labels.Set{LabelRedisPassword: LabelRedisPasswordValue})},
			// Pods are needed for their identity, labels, annotations, phase
			// and IP only (policy pod counts, Redis members).
			&corev1.Pod{}: {Transform: trimPod},
		},
	}
}

// trimPod keeps the fields the reconcilers read and drops the rest (spec,
// managed fields, container statuses), which dominate a pod's size.
func trimPod(obj any) (any, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	return &corev1.Pod{
		TypeMeta: pod.TypeMeta,
		ObjectMeta: func() metav1.ObjectMeta {
			m := pod.ObjectMeta
			m.ManagedFields = nil
			return m
		}(),
		Status: corev1.PodStatus{Phase: pod.Status.Phase, PodIP: pod.Status.PodIP, PodIPs: pod.Status.PodIPs},
	}, nil
}
