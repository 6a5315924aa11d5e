package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/gatehouse-dev/gatehouse/api/v1alpha1"
	"github.com/gatehouse-dev/gatehouse/internal/render"
)

// Field index names.
const (
	// redisRefIndex indexes policies by spec.redisRef.name, so a RedisCluster
	// change finds its dependants without listing every policy.
	redisRefIndex = "spec.redisRef.name"
	// podSidecarIndex indexes pods that carry the Gatehouse sidecar.
	podSidecarIndex = "gatehouse.dev/sidecar"
)

// policy is the surface the three policy kinds share.
type policy interface {
	client.Object
	GetPodSelector() metav1.LabelSelector
	GetRedisRef() v1alpha1.RedisReference
	GetPolicyStatus() *v1alpha1.PolicyStatus
}

// policyReconciler reconciles one policy kind. SessionPolicy, RateLimitPolicy
// and CachePolicy each get their own instance (and controller, queue and
// metrics); they differ only in kind, so the logic is written once.
type policyReconciler[T any, P interface {
	*T
	policy
}, L any, PL interface {
	*L
	client.ObjectList
}] struct {
	client   client.Client
	kind     render.Kind
	syncer   *configSyncer
	recorder events.EventRecorder
}

// Reconcile renders the policy's namespace and reports the verdict on it.
func (r *policyReconciler[T, P, L, PL]) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	obj := P(new(T))
	if err := r.client.Get(ctx, req.NamespacedName, obj); err != nil {
		if apierrors.IsNotFound(err) {
			// A deleted policy must leave the namespace's configuration.
			_, err := r.syncer.Sync(ctx, req.Namespace)
			return ctrl.Result{}, err
		}
		return ctrl.Result{}, err
	}
	return ctrl.Result{}, r.reconcile(ctx, obj)
}

func (r *policyReconciler[T, P, L, PL]) reconcile(ctx context.Context, obj P) error {
	res, syncErr := r.syncer.Sync(ctx, obj.GetNamespace())
	verdict, found := res.Verdicts[render.Key{Kind: r.kind, Name: obj.GetName()}]
	if !found && syncErr == nil {
		// Only an object being deleted is missing from the rendering.
		return nil
	}
	pods, err := r.selectedPods(ctx, obj)
	if err != nil {
		return err
	}
	cur := obj.GetPolicyStatus()
	next := policyStatus(*cur, statusInput{
		generation: obj.GetGeneration(), verdict: verdict, hash: res.Hash, syncErr: syncErr, selectedPods: pods,
	})
	if equality.Semantic.DeepEqual(*cur, next) {
		return syncErr
	}
	r.recordTransition(obj, meta.FindStatusCondition(cur.Conditions, v1alpha1.ConditionAccepted), verdict)

	patch := client.MergeFrom(obj.DeepCopyObject().(client.Object))
	*obj.GetPolicyStatus() = next
	if err := r.client.Status().Patch(ctx, obj, patch); err != nil {
		return fmt.Errorf("patch %s status: %w", r.kind, client.IgnoreNotFound(err))
	}
	apiWrites.WithLabelValues(string(r.kind), "status").Inc()
	return syncErr
}

// recordTransition emits an event when the verdict changes, so `kubectl
// describe` shows why a policy left or entered force.
func (r *policyReconciler[T, P, L, PL]) recordTransition(obj P, prev *metav1.Condition, v render.Verdict) {
	if r.recorder == nil || (prev != nil && prev.Reason == v.Reason) || v.Reason == "" {
		return
	}
	if v.Accepted {
		r.recorder.Eventf(obj, nil, corev1.EventTypeNormal, v.Reason, "Render", "%s", v.Message)
		return
	}
	r.recorder.Eventf(obj, nil, corev1.EventTypeWarning, v.Reason, "Render", "%s", v.Message)
}

// selectedPods counts running pods with the sidecar that the policy selects,
// from the pod index rather than a full list.
func (r *policyReconciler[T, P, L, PL]) selectedPods(ctx context.Context, obj P) (int32, error) {
	sel, err := metav1.LabelSelectorAsSelector(new(obj.GetPodSelector()))
	if err != nil {
		return 0, nil // the API server validates selectors; an unparsable one selects nothing
	}
	var pods corev1.PodList
	if err := r.client.List(ctx, &pods, client.InNamespace(obj.GetNamespace()), client.MatchingFields{podSidecarIndex: "true"}); err != nil {
		return 0, fmt.Errorf("list pods with the sidecar: %w", err)
	}
	var n int32
	for _, p := range pods.Items {
		if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil && sel.Matches(labels.Set(p.Labels)) {
			n++
		}
	}
	return n, nil
}

// setup registers the reconciler's controller and watches.
func (r *policyReconciler[T, P, L, PL]) setup(mgr ctrl.Manager) error {
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), P(new(T)), redisRefIndex, func(o client.Object) []string {
		return []string{o.(P).GetRedisRef().Name}
	}); err != nil {
		return fmt.Errorf("index %s by redisRef: %w", r.kind, err)
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named(string(r.kind)).
		// Status writes bump no generation; ignoring them avoids reconciling
		// our own writes.
		For(P(new(T)), builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		// The ConfigMap reflects every policy in the namespace: when it changes
		// (or is edited or deleted by someone), every policy's status may too.
		Watches(&corev1.ConfigMap{}, handler.EnqueueRequestsFromMapFunc(r.allInNamespace),
			builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool { return o.GetName() == SidecarConfigMapName }))).
		// Readiness of a RedisCluster decides whether its dependants are rendered.
		Watches(&v1alpha1.RedisCluster{}, handler.EnqueueRequestsFromMapFunc(r.referencing)).
		// Pods with the sidecar are counted in status.
		Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(r.selecting),
			builder.WithPredicates(predicate.NewPredicateFuncs(hasSidecar))).
		Complete(r)
}

func (r *policyReconciler[T, P, L, PL]) list(ctx context.Context, opts ...client.ListOption) []P {
	list := PL(new(L))
	if err := r.client.List(ctx, list, opts...); err != nil {
		return nil
	}
	items, err := meta.ExtractList(list)
	if err != nil {
		return nil
	}
	out := make([]P, 0, len(items))
	for _, it := range items {
		out = append(out, it.(P))
	}
	return out
}

func requests[P client.Object](objs []P) []reconcile.Request {
	reqs := make([]reconcile.Request, 0, len(objs))
	for _, o := range objs {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(o)})
	}
	return reqs
}

func (r *policyReconciler[T, P, L, PL]) allInNamespace(ctx context.Context, o client.Object) []reconcile.Request {
	return requests(r.list(ctx, client.InNamespace(o.GetNamespace())))
}

func (r *policyReconciler[T, P, L, PL]) referencing(ctx context.Context, o client.Object) []reconcile.Request {
	return requests(r.list(ctx, client.InNamespace(o.GetNamespace()), client.MatchingFields{redisRefIndex: o.GetName()}))
}

func (r *policyReconciler[T, P, L, PL]) selecting(ctx context.Context, o client.Object) []reconcile.Request {
	var out []reconcile.Request
	for _, p := range r.list(ctx, client.InNamespace(o.GetNamespace())) {
		sel, err := metav1.LabelSelectorAsSelector(new(p.GetPodSelector()))
		if err == nil && sel.Matches(labels.Set(o.GetLabels())) {
			out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(p)})
		}
	}
	return out
}

// hasSidecar reports whether a pod was injected.
func hasSidecar(o client.Object) bool {
	_, ok := o.GetAnnotations()[AnnotationSidecarVersion]
	return ok
}

// indexPodsWithSidecar registers podSidecarIndex once for all reconcilers.
func indexPodsWithSidecar(mgr ctrl.Manager) error {
	return mgr.GetFieldIndexer().IndexField(context.Background(), &corev1.Pod{}, podSidecarIndex, func(o client.Object) []string {
		if hasSidecar(o) {
			return []string{"true"}
		}
		return nil
	})
}
