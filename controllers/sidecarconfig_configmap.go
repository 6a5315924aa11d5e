package controllers

import (
	"cmp"
	"context"
	"crypto/sha256"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"github.com/gatehouse-dev/gatehouse/api/v1alpha1"
	"github.com/gatehouse-dev/gatehouse/internal/render"
)

// AnnotationInForce on the sidecar ConfigMap lists the policies its document
// contains ("Kind/name", comma-separated, sorted). It is the record of what
// is in force, which the next render reads: a policy in force stays in force
// through an outage of its RedisCluster, one never in force does not enter
// it while its cluster is down.
const AnnotationInForce = "gatehouse.dev/in-force"

func (r *sidecarConfigReconciler) currentConfigMap(ctx context.Context, namespace string) (*corev1.ConfigMap, error) {
	var cm corev1.ConfigMap
	err := r.client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: SidecarConfigMapName}, &cm)
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("get configmap %s/%s: %w", namespace, SidecarConfigMapName, err)
	}
	return &cm, nil
}

// inForce reads AnnotationInForce; a missing ConfigMap has nothing in force.
func inForce(cm *corev1.ConfigMap) map[render.Key]bool {
	out := map[render.Key]bool{}
	if cm == nil {
		return out
	}
	for entry := range strings.SplitSeq(cm.Annotations[AnnotationInForce], ",") {
		if kind, name, ok := strings.Cut(entry, "/"); ok {
			out[render.Key{Kind: render.Kind(kind), Name: name}] = true
		}
	}
	return out
}

// inForceValue is AnnotationInForce for the accepted verdicts of res.
func inForceValue(res render.Result) string {
	var keys []string
	for k, v := range res.Verdicts {
		if v.Accepted {
			keys = append(keys, string(k.Kind)+"/"+k.Name)
		}
	}
	slices.Sort(keys)
	return strings.Join(keys, ",")
}

// owners lists every policy of the namespace as a (non-controller) owner of
// the ConfigMap, so the garbage collector removes it with the last policy
// even when the operator is not running.
func owners(in render.Input) []metav1.OwnerReference {
	var refs []metav1.OwnerReference
	add := func(kind render.Kind, o metav1.ObjectMeta) {
		refs = append(refs, metav1.OwnerReference{
			APIVersion: v1alpha1.GroupVersion.String(), Kind: string(kind), Name: o.Name, UID: o.UID,
		})
	}
	for _, p := range in.Sessions {
		add(render.KindSession, p.ObjectMeta)
	}
	for _, p := range in.RateLimits {
		add(render.KindRateLimit, p.ObjectMeta)
	}
	for _, p := range in.Caches {
		add(render.KindCache, p.ObjectMeta)
	}
	slices.SortFunc(refs, func(a, b metav1.OwnerReference) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Name, b.Name))
	})
	return refs
}

func managedLabels() map[string]string {
	return map[string]string{LabelManagedBy: ManagedByValue}
}

// desiredAnnotations are the ConfigMap's annotations for res.
func desiredAnnotations(res render.Result) map[string]string {
	return map[string]string{AnnotationConfigHash: res.Hash, AnnotationInForce: inForceValue(res)}
}

// apply writes the rendered document with server-side apply, unless cur
// already holds exactly it.
func (r *sidecarConfigReconciler) apply(ctx context.Context, in render.Input, cur *corev1.ConfigMap, res render.Result) error {
	refs := owners(in)
	if cur != nil && upToDate(cur, res, refs) {
		return nil
	}
	ac := corev1ac.ConfigMap(SidecarConfigMapName, in.Namespace).
		WithLabels(managedLabels()).
		WithAnnotations(desiredAnnotations(res)).
		WithData(map[string]string{SidecarConfigKey: string(res.Data)})
	for _, ref := range refs {
		ac.WithOwnerReferences(metav1ac.OwnerReference().
			WithAPIVersion(ref.APIVersion).WithKind(ref.Kind).WithName(ref.Name).WithUID(ref.UID))
	}
	// Recorded before the write: its watch event can arrive before the
	// response does.
	r.written.set(in.Namespace, fingerprint(map[string]string{SidecarConfigKey: string(res.Data)}, desiredAnnotations(res), refs))
	if err := r.client.Apply(ctx, ac, client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
		return fmt.Errorf("apply configmap %s/%s: %w", in.Namespace, SidecarConfigMapName, err)
	}
	apiWrites.WithLabelValues("ConfigMap", "apply").Inc()
	ctrl.LoggerFrom(ctx).Info("Applied sidecar configuration", "configMap", klog.KRef(in.Namespace, SidecarConfigMapName), "hash", res.Hash)
	return nil
}

// upToDate reports whether the ConfigMap already holds exactly what would be
// applied, including labels, annotations and owners that someone may have
// edited away.
func upToDate(cm *corev1.ConfigMap, res render.Result, refs []metav1.OwnerReference) bool {
	if !maps.Equal(cm.Data, map[string]string{SidecarConfigKey: string(res.Data)}) || len(cm.BinaryData) != 0 {
		return false
	}
	for k, v := range desiredAnnotations(res) {
		if cm.Annotations[k] != v {
			return false
		}
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

// remove deletes the ConfigMap of a namespace with neither policies nor
// injected pods.
func (r *sidecarConfigReconciler) remove(ctx context.Context, cur *corev1.ConfigMap) error {
	if cur == nil {
		return nil
	}
	if err := r.client.Delete(ctx, cur, client.Preconditions{UID: &cur.UID}); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("delete configmap %s: %w", klog.KObj(cur), err)
	}
	r.written.forget(cur.Namespace)
	apiWrites.WithLabelValues("ConfigMap", "delete").Inc()
	ctrl.LoggerFrom(ctx).Info("Deleted sidecar configuration: no policy and no injected pod left", "configMap", klog.KObj(cur))
	return nil
}

// writtenVersions is a fingerprint of the last ConfigMap content written
// per namespace (the "expectations" of the ReplicaSet controller): the watch
// event of a ConfigMap holding what this reconciler wrote needs no render,
// while an edit by anyone else changes the fingerprint and is repaired.
type writtenVersions struct {
	mu sync.Mutex
	rv map[string][sha256.Size]byte
}

func (w *writtenVersions) set(namespace string, sum [sha256.Size]byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.rv[namespace] = sum
}

func (w *writtenVersions) forget(namespace string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.rv, namespace)
}

func (w *writtenVersions) ours(o client.Object) bool {
	cm, ok := o.(*corev1.ConfigMap)
	if !ok {
		return false
	}
	sum := fingerprint(cm.Data, cm.Annotations, cm.OwnerReferences)
	w.mu.Lock()
	defer w.mu.Unlock()
	want, ok := w.rv[o.GetNamespace()]
	return ok && want == sum
}

// fingerprint hashes what the reconciler decides about the ConfigMap: its
// data, the annotations it sets and its owners.
func fingerprint(data, annotations map[string]string, owners []metav1.OwnerReference) [sha256.Size]byte {
	h := sha256.New()
	for _, k := range slices.Sorted(maps.Keys(data)) {
		fmt.Fprintf(h, "d%q=%q\n", k, data[k])
	}
	for _, k := range []string{AnnotationConfigHash, AnnotationInForce} {
		fmt.Fprintf(h, "a%q=%q\n", k, annotations[k])
	}
	for _, o := range owners {
		fmt.Fprintf(h, "o%s/%s/%s\n", o.Kind, o.Name, o.UID)
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

// configMapChangedByOthers passes events of the sidecar ConfigMaps except
// those of the versions this reconciler wrote: an edit or deletion by
// someone else is repaired, the reconciler's own write does not render the
// namespace again.
func (r *sidecarConfigReconciler) configMapChangedByOthers() predicate.Predicate {
	ours := func(o client.Object) bool { return o.GetName() != SidecarConfigMapName || r.written.ours(o) }
	return predicate.Funcs{
		CreateFunc:  func(e event.CreateEvent) bool { return !ours(e.Object) },
		UpdateFunc:  func(e event.UpdateEvent) bool { return !ours(e.ObjectNew) },
		DeleteFunc:  func(e event.DeleteEvent) bool { return e.Object.GetName() == SidecarConfigMapName },
		GenericFunc: func(e event.GenericEvent) bool { return e.Object.GetName() == SidecarConfigMapName },
	}
}
