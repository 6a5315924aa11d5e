package controllers

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/gatehouse-dev/gatehouse/api/v1alpha1"
	"github.com/gatehouse-dev/gatehouse/internal/render"
)

// +kubebuilder:rbac:groups=gatehouse.dev,resources=sessionpolicies;ratelimitpolicies;cachepolicies,verbs=list;watch
// +kubebuilder:rbac:groups=gatehouse.dev,resources=sessionpolicies/status;ratelimitpolicies/status;cachepolicies/status,verbs=patch
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=list;watch;create;patch;delete
// +kubebuilder:rbac:groups="",resources=pods,verbs=list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// podSidecarIndex indexes pods that carry the Gatehouse sidecar, under
// podSidecarIndexValue.
const (
	podSidecarIndex      = "gatehouse.dev/sidecar"
	podSidecarIndexValue = "true"
)

// DefaultRenderDelay is how long the namespace reconciler lets a burst of
// changes gather before it renders: `kubectl apply -f policies/` creates its
// objects one by one, and rendering after each would write the ConfigMap and
// every policy's status once per object. The kubelet takes up to a minute
// to project a new ConfigMap into pods anyway.
const DefaultRenderDelay = 500 * time.Millisecond

// Operator metrics. Writes are what scale badly (each is an etcd
// transaction and a watch event for every informer), renders what the
// reconciler's batching saves; both are exported so a deployment can watch
// the same figures the scale test asserts.
var (
	apiWrites = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gatehouse_operator_api_writes_total",
		Help: "Writes the operator made to the API server, by object kind and operation.",
	}, []string{"kind", "operation"})
	renders = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gatehouse_operator_namespace_renders_total",
		Help: "Renders of a namespace's sidecar configuration, by result (success, failure).",
	}, []string{"result"})
)

func init() { metrics.Registry.MustRegister(apiWrites, renders) }

// policy is the surface the three policy kinds share.
type policy interface {
	client.Object
	GetPodSelector() metav1.LabelSelector
	GetPolicyStatus() *v1alpha1.PolicyStatus
}

// sidecarConfigReconciler owns a namespace's sidecar configuration: it is
// keyed by namespace, renders the namespace once per batch of changes,
// writes the one ConfigMap, and patches every policy's status from the one
// verdict set (cluster-api's "one owner writes"). The policy kinds have no
// reconcilers of their own; their events only say which namespace to
// render.
type sidecarConfigReconciler struct {
	client   client.Client
	recorder events.EventRecorder
	delay    time.Duration
	// written remembers the ConfigMap content this reconciler wrote, so its
	// watch events do not render the namespace a second time.
	written *writtenVersions
}

// setupSidecarConfig registers the namespace reconciler and the watches
// that map every input of a namespace's render to it.
func setupSidecarConfig(mgr ctrl.Manager, opts Options) error {
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &corev1.Pod{}, podSidecarIndex, func(o client.Object) []string {
		if hasSidecar(o) {
			return []string{podSidecarIndexValue}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("index pods with the sidecar: %w", err)
	}
	delay := opts.RenderDelay
	if delay == 0 {
		delay = DefaultRenderDelay
	}
	r := &sidecarConfigReconciler{
		client:   mgr.GetClient(),
		recorder: mgr.GetEventRecorder("gatehouse-sidecarconfig"),
		delay:    delay,
		written:  &writtenVersions{rv: map[string][sha256.Size]byte{}},
	}
	toNamespace := namespaceHandler{delay: delay}
	// Status writes bump no generation, so the reconciler's own status
	// patches do not come back as events.
	specChanged := builder.WithPredicates(predicate.GenerationChangedPredicate{})
	return ctrl.NewControllerManagedBy(mgr).
		Named("sidecarconfig").
		Watches(&v1alpha1.SessionPolicy{}, toNamespace, specChanged).
		Watches(&v1alpha1.RateLimitPolicy{}, toNamespace, specChanged).
		Watches(&v1alpha1.CachePolicy{}, toNamespace, specChanged).
		// Readiness and address of a RedisCluster decide whether and how its
		// dependants are rendered; its other status changes do not.
		Watches(&v1alpha1.RedisCluster{}, toNamespace, builder.WithPredicates(redisRenderChanged())).
		// Injected pods need a document even without policies, and are
		// counted in status.
		Watches(&corev1.Pod{}, toNamespace, builder.WithPredicates(injectedPodChanged())).
		// A ConfigMap edited or deleted by someone is repaired.
		Watches(&corev1.ConfigMap{}, toNamespace, builder.WithPredicates(r.configMapChangedByOthers())).
		Complete(r)
}

// Reconcile renders one namespace (req.Name) and reports on its policies.
func (r *sidecarConfigReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	namespace := req.Name
	in, policies, err := r.listPolicies(ctx, namespace)
	if err != nil {
		// Without the policies there is nobody to report to.
		return ctrl.Result{}, err
	}
	res := r.sync(ctx, in)
	statusErr := r.writeStatuses(ctx, policies, res)
	if res.err != nil && apierrors.HasStatusCause(res.err, corev1.NamespaceTerminatingCause) {
		// The namespace is going away with everything in it.
		return ctrl.Result{}, nil
	}
	return ctrl.Result{}, errors.Join(res.err, statusErr)
}

// syncResult is the outcome of one namespace sync.
type syncResult struct {
	// rendered is false when the sync failed before rendering: there are no
	// verdicts.
	rendered bool
	render.Result
	// pods are the injected pods of the namespace; nil when they could not
	// be listed.
	pods []corev1.Pod
	err  error
}

// listPolicies reads the namespace's policies from the cache; objects being
// deleted are no longer in force.
func (r *sidecarConfigReconciler) listPolicies(ctx context.Context, namespace string) (render.Input, []policy, error) {
	in := render.Input{Namespace: namespace}
	var (
		sessions   v1alpha1.SessionPolicyList
		rateLimits v1alpha1.RateLimitPolicyList
		caches     v1alpha1.CachePolicyList
	)
	for _, l := range []client.ObjectList{&sessions, &rateLimits, &caches} {
		if err := r.client.List(ctx, l, client.InNamespace(namespace)); err != nil {
			return in, nil, fmt.Errorf("list %T in %s: %w", l, namespace, err)
		}
	}
	in.Sessions = slices.DeleteFunc(sessions.Items, func(p v1alpha1.SessionPolicy) bool { return p.DeletionTimestamp != nil })
	in.RateLimits = slices.DeleteFunc(rateLimits.Items, func(p v1alpha1.RateLimitPolicy) bool { return p.DeletionTimestamp != nil })
	in.Caches = slices.DeleteFunc(caches.Items, func(p v1alpha1.CachePolicy) bool { return p.DeletionTimestamp != nil })
	var policies []policy
	for i := range in.Sessions {
		policies = append(policies, &in.Sessions[i])
	}
	for i := range in.RateLimits {
		policies = append(policies, &in.RateLimits[i])
	}
	for i := range in.Caches {
		policies = append(policies, &in.Caches[i])
	}
	return in, policies, nil
}

// sync renders the namespace and applies the result. A namespace with
// injected pods always gets a document, with no policies if it has none:
// the sidecars fail closed until they have loaded one. A namespace with
// neither policies nor injected pods loses its ConfigMap.
func (r *sidecarConfigReconciler) sync(ctx context.Context, in render.Input) syncResult {
	var res syncResult
	fail := func(err error) syncResult {
		renders.WithLabelValues("failure").Inc()
		res.err = err
		return res
	}
	var clusters v1alpha1.RedisClusterList
	if err := r.client.List(ctx, &clusters, client.InNamespace(in.Namespace)); err != nil {
		return fail(fmt.Errorf("list RedisClusters in %s: %w", in.Namespace, err))
	}
	in.RedisClusters = clusters.Items
	var pods corev1.PodList
	if err := r.client.List(ctx, &pods, client.InNamespace(in.Namespace), client.MatchingFields{podSidecarIndex: podSidecarIndexValue}); err != nil {
		return fail(fmt.Errorf("list pods with the sidecar in %s: %w", in.Namespace, err))
	}
	res.pods = pods.Items
	current, err := r.currentConfigMap(ctx, in.Namespace)
	if err != nil {
		return fail(err)
	}
	if in.Empty() && !slices.ContainsFunc(res.pods, needsConfig) {
		res.err = r.remove(ctx, current)
		return res
	}
	in.InForce = inForce(current)
	rendered, err := render.Render(in)
	if err != nil {
		return fail(fmt.Errorf("render namespace %s: %w", in.Namespace, err))
	}
	renders.WithLabelValues("success").Inc()
	res.rendered, res.Result = true, rendered
	res.err = r.apply(ctx, in, current, rendered)
	return res
}

// needsConfig reports whether an injected pod's sidecar runs or will run,
// and so needs its namespace's document.
func needsConfig(p corev1.Pod) bool {
	return p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed
}

// writeStatuses patches every policy whose status changed. One policy's
// failed patch does not keep the others from being reported.
func (r *sidecarConfigReconciler) writeStatuses(ctx context.Context, policies []policy, res syncResult) error {
	var errs []error
	for _, p := range policies {
		key := render.Key{Kind: render.Kind(kindOf(p)), Name: p.GetName()}
		in := statusInput{generation: p.GetGeneration(), hash: res.Hash, syncErr: res.err}
		if v, ok := res.Verdicts[key]; ok && res.rendered {
			in.verdict = &v
		}
		if res.pods != nil {
			in.selectedPods = new(selectedPods(p, res.pods))
		}
		if err := r.writeStatus(ctx, p, in); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (r *sidecarConfigReconciler) writeStatus(ctx context.Context, p policy, in statusInput) error {
	cur := p.GetPolicyStatus()
	next := policyStatus(*cur, in)
	if equality.Semantic.DeepEqual(*cur, next) {
		return nil
	}
	r.recordTransition(p, meta.FindStatusCondition(cur.Conditions, v1alpha1.ConditionAccepted), meta.FindStatusCondition(next.Conditions, v1alpha1.ConditionAccepted))
	patch := client.MergeFrom(p.DeepCopyObject().(client.Object))
	*p.GetPolicyStatus() = next
	if err := r.client.Status().Patch(ctx, p, patch); err != nil {
		if apierrors.IsNotFound(err) {
			return nil // deleted since the cache listed it; its deletion renders again
		}
		return fmt.Errorf("patch %s %s status: %w", kindOf(p), klog.KObj(p), err)
	}
	apiWrites.WithLabelValues(kindOf(p), "status").Inc()
	return nil
}

// recordTransition emits an event when a policy's verdict changes, so
// `kubectl describe` shows why it left or entered force.
func (r *sidecarConfigReconciler) recordTransition(p policy, prev, next *metav1.Condition) {
	if r.recorder == nil || next == nil || (prev != nil && prev.Reason == next.Reason) {
		return
	}
	typ := corev1.EventTypeWarning
	if next.Status == metav1.ConditionTrue {
		typ = corev1.EventTypeNormal
	}
	r.recorder.Eventf(p, nil, typ, next.Reason, "Render", "%s", next.Message)
}

// kindOf names a policy's kind without relying on TypeMeta, which objects
// from the cache may lack.
func kindOf(p policy) string {
	switch p.(type) {
	case *v1alpha1.SessionPolicy:
		return string(render.KindSession)
	case *v1alpha1.RateLimitPolicy:
		return string(render.KindRateLimit)
	default:
		return string(render.KindCache)
	}
}

// selectedPods counts the running pods with the sidecar that p selects.
func selectedPods(p policy, pods []corev1.Pod) int32 {
	sel, err := metav1.LabelSelectorAsSelector(new(p.GetPodSelector()))
	if err != nil {
		return 0 // the API server validates selectors; an unparsable one selects nothing
	}
	var n int32
	for _, pod := range pods {
		if pod.Status.Phase == corev1.PodRunning && pod.DeletionTimestamp == nil && sel.Matches(labels.Set(pod.Labels)) {
			n++
		}
	}
	return n
}

// hasSidecar reports whether a pod was injected.
func hasSidecar(o client.Object) bool {
	_, ok := o.GetAnnotations()[AnnotationSidecarVersion]
	return ok
}

// namespaceHandler maps any event to its object's namespace, delayed so
// that a burst of changes in one namespace becomes one render: while a
// namespace waits in the queue, further events for it fold into the same
// item, which keeps its first ready time.
type namespaceHandler struct{ delay time.Duration }

var _ handler.EventHandler = namespaceHandler{}

func (h namespaceHandler) add(o client.Object, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	if o.GetNamespace() == "" {
		return
	}
	q.AddAfter(reconcile.Request{NamespacedName: client.ObjectKey{Name: o.GetNamespace()}}, h.delay)
}

func (h namespaceHandler) Create(_ context.Context, e event.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	h.add(e.Object, q)
}

func (h namespaceHandler) Update(_ context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	h.add(e.ObjectNew, q)
}

func (h namespaceHandler) Delete(_ context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	h.add(e.Object, q)
}

func (h namespaceHandler) Generic(_ context.Context, e event.GenericEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	h.add(e.Object, q)
}

// redisRenderChanged passes RedisCluster events that can change a render:
// creation, deletion, and updates of what render reads (readiness, slot
// coverage, client address). The cluster reconciler updates its status for
// many other reasons (members, memory, operations in progress); rendering
// every namespace policy again for those would be waste.
func redisRenderChanged() predicate.Predicate {
	view := func(o client.Object) any {
		rc, ok := o.(*v1alpha1.RedisCluster)
		if !ok {
			return nil
		}
		return struct {
			Ready           bool
			State, Client   string
			Slots, PoolSize int32
		}{meta.IsStatusConditionTrue(rc.Status.Conditions, v1alpha1.ConditionReady), rc.Status.ClusterState, rc.Status.ClientService, rc.Status.SlotsAssigned, rc.Status.SidecarPoolSize}
	}
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool { return view(e.ObjectOld) != view(e.ObjectNew) }}
}

// injectedPodChanged passes events of pods with the sidecar that matter to
// the render and the pod counts: coming, going, phase, labels, deletion.
func injectedPodChanged() predicate.Predicate {
	return predicate.Funcs{
		CreateFunc:  func(e event.CreateEvent) bool { return hasSidecar(e.Object) },
		DeleteFunc:  func(e event.DeleteEvent) bool { return hasSidecar(e.Object) },
		GenericFunc: func(e event.GenericEvent) bool { return hasSidecar(e.Object) },
		UpdateFunc: func(e event.UpdateEvent) bool {
			o, n := e.ObjectOld.(*corev1.Pod), e.ObjectNew.(*corev1.Pod)
			if !hasSidecar(o) && !hasSidecar(n) {
				return false
			}
			return o.Status.Phase != n.Status.Phase || !maps.Equal(o.Labels, n.Labels) ||
				(o.DeletionTimestamp == nil) != (n.DeletionTimestamp == nil) || hasSidecar(o) != hasSidecar(n)
		},
	}
}
