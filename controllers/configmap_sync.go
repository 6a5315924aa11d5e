package controllers

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/gatehouse-dev/gatehouse/api/v1alpha1"
	"github.com/gatehouse-dev/gatehouse/internal/render"
)

// apiWrites counts the operator's writes to the API server. Writes are what
// scale badly (each is an etcd transaction and a watch event for every
// informer), so the reconcilers compare before writing and this shows it.
var apiWrites = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "gatehouse_operator_api_writes_total",
	Help: "Writes the operator made to the API server, by object kind and operation.",
}, []string{"kind", "operation"})

func init() { metrics.Registry.MustRegister(apiWrites) }

// configSyncer keeps a namespace's gatehouse-sidecar ConfigMap equal to the
// rendering of its policies. All three policy reconcilers call it: the
// document depends on every policy in the namespace, and rendering is
// deterministic, so whichever reconciler runs last writes the same bytes.
type configSyncer struct {
	client client.Client
}

// Sync renders namespace and applies the result. With no policy left, it
// removes the ConfigMap.
func (s *configSyncer) Sync(ctx context.Context, namespace string) (render.Result, error) {
	in, err := s.load(ctx, namespace)
	if err != nil {
		return render.Result{}, err
	}
	if in.Empty() {
		return render.Result{}, s.remove(ctx, namespace)
	}
	res, err := render.Render(in)
	if err != nil {
		return render.Result{}, fmt.Errorf("render namespace %s: %w", namespace, err)
	}
	if err := s.apply(ctx, namespace, res, owners(in)); err != nil {
		return res, err
	}
	return res, nil
}

func (s *configSyncer) load(ctx context.Context, namespace string) (render.Input, error) {
	in := render.Input{Namespace: namespace}
	var (
		sessions   v1alpha1.SessionPolicyList
		rateLimits v1alpha1.RateLimitPolicyList
		caches     v1alpha1.CachePolicyList
		clusters   v1alpha1.RedisClusterList
	)
	for _, l := range []client.ObjectList{&sessions, &rateLimits, &caches, &clusters} {
		if err := s.client.List(ctx, l, client.InNamespace(namespace)); err != nil {
			return in, fmt.Errorf("list %T in %s: %w", l, namespace, err)
		}
	}
	// Objects being deleted are no longer in force.
	in.Sessions = slices.DeleteFunc(sessions.Items, func(p v1alpha1.SessionPolicy) bool { return p.DeletionTimestamp != nil })
	in.RateLimits = slices.DeleteFunc(rateLimits.Items, func(p v1alpha1.RateLimitPolicy) bool { return p.DeletionTimestamp != nil })
	in.Caches = slices.DeleteFunc(caches.Items, func(p v1alpha1.CachePolicy) bool { return p.DeletionTimestamp != nil })
	in.RedisClusters = clusters.Items
	return in, nil
}

// owners lists every policy of the namespace as a (non-controller) owner of
// the ConfigMap, so the garbage collector removes it with the last policy even
// when the operator is not running.
func owners(in render.Input) []metav1.OwnerReference {
	var refs []metav1.OwnerReference
	add := func(kind string, o metav1.ObjectMeta) {
		refs = append(refs, metav1.OwnerReference{
			APIVersion: v1alpha1.GroupVersion.String(), Kind: kind, Name: o.Name, UID: o.UID,
		})
	}
	for _, p := range in.Sessions {
		add(string(render.KindSession), p.ObjectMeta)
	}
	for _, p := range in.RateLimits {
		add(string(render.KindRateLimit), p.ObjectMeta)
	}
	for _, p := range in.Caches {
		add(string(render.KindCache), p.ObjectMeta)
	}
	slices.SortFunc(refs, func(a, b metav1.OwnerReference) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Name, b.Name))
	})
	return refs
}

func managedLabels() map[string]string {
	return map[string]string{LabelManagedBy: ManagedByValue}
}

func (s *configSyncer) apply(ctx context.Context, namespace string, res render.Result, refs []metav1.OwnerReference) error {
	var cur corev1.ConfigMap
	err := s.client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: SidecarConfigMapName}, &cur)
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("get configmap %s/%s: %w", namespace, SidecarConfigMapName, err)
	}
	if err == nil && upToDate(&cur, res, refs) {
		return nil
	}

	ac := corev1ac.ConfigMap(SidecarConfigMapName, namespace).
		WithLabels(managedLabels()).
		WithAnnotations(map[string]string{AnnotationConfigHash: res.Hash}).
		WithData(map[string]string{SidecarConfigKey: string(res.Data)})
	for _, r := range refs {
		ac.WithOwnerReferences(metav1ac.OwnerReference().
			WithAPIVersion(r.APIVersion).WithKind(r.Kind).WithName(r.Name).WithUID(r.UID))
	}
	if err := s.client.Apply(ctx, ac, client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
		return fmt.Errorf("apply configmap %s/%s: %w", namespace, SidecarConfigMapName, err)
	}
	apiWrites.WithLabelValues("ConfigMap", "apply").Inc()
	log.FromContext(ctx).Info("Applied sidecar configuration", "configMap", client.ObjectKey{Namespace: namespace, Name: SidecarConfigMapName}, "hash", res.Hash)
	return nil
}

// upToDate reports whether the ConfigMap already holds exactly what would be
// applied, including labels and owners that someone may have edited away.
func upToDate(cm *corev1.ConfigMap, res render.Result, refs []metav1.OwnerReference) bool {
	if cm.Annotations[AnnotationConfigHash] != res.Hash || !maps.Equal(cm.Data, map[string]string{SidecarConfigKey: string(res.Data)}) || len(cm.BinaryData) != 0 {
		return false
	}
	for k, v := range managedLabels() {
		if cm.Labels[k] != v {
			return false
		}
	}
	return slices.EqualFunc(cm.OwnerReferences, refs, func(a, b metav1.OwnerReference) bool {
		return a.UID == b.UID && a.Kind == b.Kind && a.Name == b.Name
	})
}

func (s *configSyncer) remove(ctx context.Context, namespace string) error {
	var cur corev1.ConfigMap
	if err := s.client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: SidecarConfigMapName}, &cur); err != nil {
		return client.IgnoreNotFound(err)
	}
	if err := s.client.Delete(ctx, &cur); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("delete configmap %s/%s: %w", namespace, SidecarConfigMapName, err)
	}
	apiWrites.WithLabelValues("ConfigMap", "delete").Inc()
	log.FromContext(ctx).Info("Deleted sidecar configuration, no policy left", "configMap", client.ObjectKeyFromObject(&cur))
	return nil
}
