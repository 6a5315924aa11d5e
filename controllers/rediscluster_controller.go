package controllers

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/gatehouse-dev/gatehouse/api/v1alpha1"
	"github.com/gatehouse-dev/gatehouse/internal/rediscluster"
	"github.com/gatehouse-dev/gatehouse/internal/redisconf"
	"github.com/gatehouse-dev/gatehouse/internal/redishealth"
)

// +kubebuilder:rbac:groups=gatehouse.dev,resources=redisclusters,verbs=list;watch
// +kubebuilder:rbac:groups=gatehouse.dev,resources=redisclusters/status,verbs=patch
// +kubebuilder:rbac:groups=apps,resources=statefulsets,verbs=list;watch;create;patch
// +kubebuilder:rbac:groups="",resources=services,verbs=list;watch;create;patch
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=list;watch;create;patch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=list;watch;create;patch
// +kubebuilder:rbac:groups=policy,resources=poddisruptionbudgets,verbs=list;watch;create;patch
// +kubebuilder:rbac:groups="",resources=pods,verbs=list;watch;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// passwordSecretIndex indexes RedisClusters by spec.passwordSecretRef.name,
// so a change to a user's Secret finds the clusters using it.
const passwordSecretIndex = "spec.passwordSecretRef.name"

// errPasswordUnavailable: the Secret is missing or lacks its key. It is the
// user's to fix, so it is reported in status rather than retried.
var errPasswordUnavailable = errors.New("password unavailable")

// redisClusterReconciler runs RedisClusters: it renders and applies the
// Kubernetes objects, then forms, repairs and scales the Redis Cluster
// itself through the nodes its member source names.
type redisClusterReconciler struct {
	client   client.Client
	members  RedisMemberSource
	recorder events.EventRecorder
	// memory holds what one reconcile leaves for the next (rejected
	// connection counts, settings sent to each process).
	memory *redisMemory
	// now is the clock; nil means time.Now.
	now func() time.Time
}

// setupRedisCluster registers the RedisCluster reconciler. Options.RedisMembers
// nil means the pods of each cluster's StatefulSet.
func setupRedisCluster(mgr ctrl.Manager, opts Options) error {
	members := opts.RedisMembers
	if members == nil {
		members = PodRedisMembers{Client: mgr.GetClient()}
	}
	r := &redisClusterReconciler{client: mgr.GetClient(), members: members, recorder: mgr.GetEventRecorder("gatehouse-rediscluster"), memory: newRedisMemory()}
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &v1alpha1.RedisCluster{}, passwordSecretIndex, func(o client.Object) []string {
		if ref := o.(*v1alpha1.RedisCluster).Spec.PasswordSecretRef; ref != nil {
			return []string{ref.Name}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("index RedisClusters by password Secret: %w", err)
	}
	b := ctrl.NewControllerManagedBy(mgr).
		Named("rediscluster").
		// Our own status writes bump no generation and need no reconcile.
		For(&v1alpha1.RedisCluster{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Owns(&appsv1.StatefulSet{}).
		Owns(&corev1.Service{}).
		Owns(&corev1.ConfigMap{}).
		Owns(&corev1.Secret{}).
		Owns(&policyv1.PodDisruptionBudget{}).
		// A user's password Secret appearing or changing.
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.usingSecret)).
		// Pods starting, getting an IP, becoming ready or going away are
		// when the cluster needs forming or repairing.
		Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(podCluster),
			builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool {
				return o.GetLabels()[labelName] == redisLabelName
			}))).
		// The connection budget counts the sidecars using each cluster:
		// pods with the sidecar coming, going or being relabelled, and
		// policies changing what they select or use.
		Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(r.clustersInNamespace),
			builder.WithPredicates(injectedPodChanged())).
		Watches(&v1alpha1.SessionPolicy{}, handler.EnqueueRequestsFromMapFunc(referencedCluster)).
		Watches(&v1alpha1.RateLimitPolicy{}, handler.EnqueueRequestsFromMapFunc(referencedCluster)).
		Watches(&v1alpha1.CachePolicy{}, handler.EnqueueRequestsFromMapFunc(referencedCluster))
	// Processes outside Kubernetes cannot be watched; such a source
	// announces its changes itself.
	if src, ok := members.(source.Source); ok {
		b = b.WatchesRawSource(src)
	}
	return b.Complete(r)
}

func podCluster(_ context.Context, o client.Object) []reconcile.Request {
	name := o.GetLabels()[labelInstance]
	if name == "" {
		return nil
	}
	return []reconcile.Request{{NamespacedName: client.ObjectKey{Namespace: o.GetNamespace(), Name: name}}}
}

// clustersInNamespace maps a sidecar pod to every RedisCluster of its
// namespace (a handful): which of them its policies use is the reconcile's
// to find out.
func (r *redisClusterReconciler) clustersInNamespace(ctx context.Context, o client.Object) []reconcile.Request {
	var list v1alpha1.RedisClusterList
	if err := r.client.List(ctx, &list, client.InNamespace(o.GetNamespace())); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "List RedisClusters for a sidecar pod", "namespace", o.GetNamespace())
		return nil
	}
	out := make([]reconcile.Request, 0, len(list.Items))
	for _, rc := range list.Items {
		out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&rc)})
	}
	return out
}

// referencedCluster maps a policy to the RedisCluster it uses.
func referencedCluster(_ context.Context, o client.Object) []reconcile.Request {
	p, ok := o.(interface {
		GetRedisRef() v1alpha1.RedisReference
	})
	if !ok {
		return nil
	}
	return []reconcile.Request{{NamespacedName: client.ObjectKey{Namespace: o.GetNamespace(), Name: p.GetRedisRef().Name}}}
}

func (r *redisClusterReconciler) usingSecret(ctx context.Context, o client.Object) []reconcile.Request {
	var list v1alpha1.RedisClusterList
	if err := r.client.List(ctx, &list, client.InNamespace(o.GetNamespace()), client.MatchingFields{passwordSecretIndex: o.GetName()}); err != nil {
		// A map function cannot return an error; the clusters using the
		// Secret are reconciled again at their next requeue.
		ctrl.LoggerFrom(ctx).Error(err, "Listing the RedisClusters that use a Secret failed", "secret", klog.KObj(o))
		return nil
	}
	out := make([]reconcile.Request, 0, len(list.Items))
	for _, rc := range list.Items {
		out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&rc)})
	}
	return out
}

// Reconcile brings one RedisCluster towards its spec and reports on it.
func (r *redisClusterReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	rc := &v1alpha1.RedisCluster{}
	if err := r.client.Get(ctx, req.NamespacedName, rc); err != nil {
		if apierrors.IsNotFound(err) {
			r.forget(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if rc.DeletionTimestamp != nil {
		// Owner references delete everything it owns.
		r.forget(req.NamespacedName)
		return ctrl.Result{}, nil
	}
	obs, err := r.reconcile(ctx, rc)
	obs.Failed = err != nil
	if serr := r.writeStatus(ctx, rc, obs); serr != nil {
		return ctrl.Result{}, errors.Join(err, serr)
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: redisRequeue(obs)}, nil
}

// forget drops what is kept of a deleted cluster: its metrics and memory.
func (r *redisClusterReconciler) forget(key types.NamespacedName) {
	redisMetrics.forget(key)
	r.memory.forget(key)
}

func (r *redisClusterReconciler) clock() time.Time {
	if r.now != nil {
		return r.now()
	}
	return time.Now()
}

// reconcile names its results so that the deferred health report below
// completes the observation it returns.
func (r *redisClusterReconciler) reconcile(ctx context.Context, rc *v1alpha1.RedisCluster) (obs redisObservation, err error) {
	log := ctrl.LoggerFrom(ctx)
	shards, replicas := redisSpec(rc)
	spec := rediscluster.Spec{Shards: int(shards), ReplicasPerShard: int(replicas)}
	now := r.clock()
	obs = redisObservation{Generation: rc.Generation, Spec: spec, Now: now, Thresholds: thresholds(rc)}
	key := types.NamespacedName{Namespace: rc.Namespace, Name: rc.Name}

	conf, err := renderRedisConfig(rc)
	if err != nil {
		// Nothing is applied: a crash-looping StatefulSet would be a worse
		// report than this condition.
		obs.ConfigErr = err
		return obs, nil
	}
	ref := redisPasswordRef(rc)
	obs.PasswordSecret = ref.Secret
	password, err := r.password(ctx, rc, ref)
	if errors.Is(err, errPasswordUnavailable) {
		obs.PasswordErr = err
		return obs, nil
	}
	if err != nil {
		return obs, err
	}
	for _, ac := range []runtime.ApplyConfiguration{redisConfigMap(rc, conf), redisAuthSecret(rc, password), redisHeadlessService(rc), redisClientService(rc), redisPDB(rc)} {
		if err := r.apply(ctx, ac); err != nil {
			return obs, err
		}
	}

	members, err := r.members.Members(ctx, rc)
	if err != nil {
		return obs, fmt.Errorf("list members: %w", err)
	}
	obs.Members = len(members)
	obs.ClientService = r.members.ClientAddress(rc)
	sidecars, err := sidecarsUsing(ctx, r.client, rc)
	if err != nil {
		return obs, err
	}
	admin := &rediscluster.Admin{Password: password, Log: slog.New(logr.ToSlogHandler(log))}
	var state *rediscluster.State
	if len(members) > 0 {
		observed, err := admin.Observe(ctx, members)
		// Every member, answering or not: a node refusing even the
		// operator (maxclients) is itself a finding.
		obs.Nodes = healthNodes(observed)
		if err != nil {
			log.V(1).Info("No Redis node answers", "err", err)
		} else {
			state = observed
		}
	}
	defer func() {
		// Whatever happens below, the health of what was observed is
		// reported, in status and in the metrics.
		obs.Rejections = r.memory.rejections(key, obs.Nodes, now)
		obs.BudgetInput = budgetInput(rc, sidecars, maxClients(obs.Nodes, conf))
		obs.Budget = redishealth.PlanBudget(obs.BudgetInput)
		redisMetrics.record(key, redisSample{At: now, Nodes: obs.Nodes, Lag: redishealth.ReplicaLag(obs.Nodes),
			ClusterOK: clusterOK(obs.Health), Budget: obs.Budget, Sidecars: sidecars})
	}()

	desired := int(shards * (1 + replicas))
	staying, leaving := members, []rediscluster.Member(nil)
	if len(members) > desired {
		staying, leaving = members[:desired], members[desired:]
	}
	pending := scaleInPending(state, leaving)
	if err := r.applyStatefulSet(ctx, rc, conf, ref, int32(desired), pending); err != nil {
		return obs, err
	}
	if state == nil {
		obs.Maintenance = r.maintain(ctx, rc, admin, members, nil, obs.Nodes, spec, now)
		return obs, nil
	}
	if len(leaving) > 0 && !pending {
		// The leaving nodes are out of the cluster and only wait for their
		// pods to go; the cluster is what stays.
		members = staying
		if state, err = admin.Observe(ctx, members); err != nil {
			// Reported like the first observation: no node answers, the
			// next reconcile tries again.
			log.V(1).Info("No staying Redis node answers", "err", err)
			return obs, nil
		}
		obs.Nodes = healthNodes(state)
	}

	health := rediscluster.Assess(state, spec)
	obs.Operation, obs.Refused, obs.OpErr = r.operate(ctx, admin, rc, members, leaving, pending, health, spec)
	if obs.Operation != "" {
		// Report what the operation left, not what it started from.
		if after, err := admin.Observe(ctx, members); err == nil {
			state, health = after, rediscluster.Assess(after, spec)
			obs.Nodes = healthNodes(state)
		} else {
			log.V(1).Info("Observing the cluster after the operation failed; reporting the health before it", "operation", obs.Operation, "err", err)
		}
	}
	obs.Health = &health

	if health.SlotsAssigned > 0 {
		// Each process gets the live settings once, including one that
		// restarted since (it runs its file, or its own, again).
		applied, err := r.applyNodeSettings(ctx, rc, state, password, conf)
		obs.OpErr = errors.Join(obs.OpErr, err)
		obs.ActiveDefrag = applied.defrag
		// status.configHash promises that every member runs this
		// configuration: only once every member answers.
		if applied.configApplied && len(health.Unreachable) == 0 {
			obs.ConfigHash = conf.Hash
			if rc.Status.ConfigHash != "" && rc.Status.ConfigHash != conf.Hash {
				r.event(rc, corev1.EventTypeNormal, "ConfigApplied", "Applied the live settings of redis.conf %s with CONFIG SET", shortHash(conf.Hash))
			}
		}
	}
	// Never a step in the middle of forming, scaling or repairing.
	act := state
	if obs.Operation != "" {
		act = nil
	}
	obs.Maintenance = r.maintain(ctx, rc, admin, members, act, obs.Nodes, spec, now)
	return obs, nil
}

// applyStatefulSet applies the nodes' StatefulSet, keeping its current size
// while a scale-in is pending.
func (r *redisClusterReconciler) applyStatefulSet(ctx context.Context, rc *v1alpha1.RedisCluster, conf redisConfig, ref passwordRef, desired int32, pending bool) error {
	var sts appsv1.StatefulSet
	current := int32(0)
	err := r.client.Get(ctx, client.ObjectKey{Namespace: rc.Namespace, Name: rc.Name}, &sts)
	switch {
	case err == nil && sts.Spec.Replicas != nil:
		current = *sts.Spec.Replicas
	case client.IgnoreNotFound(err) != nil:
		return fmt.Errorf("get StatefulSet: %w", err)
	}
	return r.apply(ctx, redisStatefulSet(rc, conf, ref, statefulSetReplicas(desired, current, pending)))
}

// scaleInPending reports whether a leaving member still belongs to the
// cluster (knows peers or owns slots) or cannot be checked; its pod must
// not go yet.
func scaleInPending(state *rediscluster.State, leaving []rediscluster.Member) bool {
	if len(leaving) == 0 {
		return false
	}
	if state == nil {
		return true
	}
	for _, l := range leaving {
		m, ok := state.Member(l.Name)
		if !ok || !m.Reachable() || len(m.View) > 1 || len(m.Self().Slots) > 0 {
			return true
		}
	}
	return false
}

// operate runs the one cluster operation the health calls for. It returns
// the operation's reason, a scale-in refusal and the operation's error
// separately: a refusal is a verdict for the user, not a failure to retry.
func (r *redisClusterReconciler) operate(ctx context.Context, admin *rediscluster.Admin, rc *v1alpha1.RedisCluster,
	members, leaving []rediscluster.Member, pending bool, h rediscluster.Health, spec rediscluster.Spec) (op string, refused, err error) {
	log := ctrl.LoggerFrom(ctx)
	switch {
	case h.SlotsAssigned == 0:
		if len(members) < spec.Nodes() || len(h.Unreachable) > 0 {
			// Forming with some nodes missing would give them no role;
			// wait for every pod.
			return v1alpha1.ReasonBootstrapping, nil, nil
		}
		r.event(rc, corev1.EventTypeNormal, v1alpha1.ReasonBootstrapping, "Forming the cluster: %d shards with %d replicas each", spec.Shards, spec.ReplicasPerShard)
		log.Info("Forming Redis Cluster", "shards", spec.Shards, "replicasPerShard", spec.ReplicasPerShard)
		if err := admin.Form(ctx, members, spec); err != nil {
			return v1alpha1.ReasonBootstrapping, nil, fmt.Errorf("form: %w", err)
		}
		return v1alpha1.ReasonBootstrapping, nil, nil
	case pending:
		r.event(rc, corev1.EventTypeNormal, v1alpha1.ReasonScaling, "Scaling in: removing %d nodes", len(leaving))
		err = admin.ScaleIn(ctx, members[:len(members)-len(leaving)], leaving, spec)
		if errors.Is(err, rediscluster.ErrUnsafe) || errors.Is(err, rediscluster.ErrUnreachable) {
			r.event(rc, corev1.EventTypeWarning, v1alpha1.ReasonScaleInRefused, "%v", err)
			return v1alpha1.ReasonScaling, err, nil
		}
		if err != nil {
			return v1alpha1.ReasonScaling, nil, fmt.Errorf("scale in: %w", err)
		}
		return v1alpha1.ReasonScaling, nil, nil
	case h.Shards < spec.Shards && len(members) >= spec.Nodes() && len(h.Unreachable) == 0 && len(h.FailedNodes) == 0:
		r.event(rc, corev1.EventTypeNormal, v1alpha1.ReasonScaling, "Scaling out from %d to %d shards", h.Shards, spec.Shards)
		if err := admin.ScaleOut(ctx, members, spec); err != nil {
			return v1alpha1.ReasonScaling, nil, fmt.Errorf("scale out: %w", err)
		}
		return v1alpha1.ReasonScaling, nil, nil
	case h.Converged:
		return "", nil, nil
	default:
		if len(h.FailedNodes) > 0 {
			// Redis fails over by itself; Repair forces it only past
			// FailoverAfter. Either way users should see it happening.
			log.Info("Repairing Redis Cluster", "problems", h.Problems)
			r.event(rc, corev1.EventTypeWarning, v1alpha1.ReasonRepairing, "Failed nodes, failing over and repairing: %s", strings.Join(h.Problems, "; "))
		}
		if err := admin.Repair(ctx, members, spec); err != nil {
			return v1alpha1.ReasonRepairing, nil, fmt.Errorf("repair: %w", err)
		}
		return v1alpha1.ReasonRepairing, nil, nil
	}
}

// password returns the cluster's password, generating its Secret once when
// the user gave none. An existing Secret is never changed: rotating the
// password silently would lock out every sidecar.
func (r *redisClusterReconciler) password(ctx context.Context, rc *v1alpha1.RedisCluster, ref passwordRef) (string, error) {
	var s corev1.Secret
	err := r.client.Get(ctx, client.ObjectKey{Namespace: rc.Namespace, Name: ref.Secret}, &s)
	switch {
	case apierrors.IsNotFound(err) && rc.Spec.PasswordSecretRef == nil:
		pw, err := newPassword()
		if err != nil {
			return "", err
		}
		secret := redisPasswordSecret(rc, pw)
		if err := r.client.Create(ctx, secret); err != nil {
			if apierrors.IsAlreadyExists(err) {
				// The label-filtered cache does not hold a Secret of that
				// name: either it lags behind our own create (the Secret's
				// event brings us back) or the Secret lacks the label and the
				// operator cannot see it. The retry resolves the first; the
				// message tells the user about the second.
				return "", fmt.Errorf("create Secret %s: it exists but the operator cannot see it yet; if this persists, label it %s=%s: %w",
					ref.Secret, LabelRedisPassword, LabelRedisPasswordValue, err)
			}
			return "", fmt.Errorf("create Secret %s: %w", ref.Secret, err)
		}
		ctrl.LoggerFrom(ctx).Info("Created password Secret", "secret", klog.KObj(secret))
		r.event(rc, corev1.EventTypeNormal, "PasswordGenerated", "Generated the password Secret %s", ref.Secret)
		return pw, nil
	case apierrors.IsNotFound(err):
		return "", fmt.Errorf("%w: Secret %s not found (the operator reads only Secrets labelled %s=%s)", errPasswordUnavailable, ref.Secret, LabelRedisPassword, LabelRedisPasswordValue)
	case err != nil:
		return "", fmt.Errorf("get Secret %s: %w", ref.Secret, err)
	}
	pw := s.Data[ref.Key]
	if len(pw) == 0 {
		return "", fmt.Errorf("%w: Secret %s has no key %q", errPasswordUnavailable, ref.Secret, ref.Key)
	}
	return string(pw), nil
}

// newPassword returns 32 random bytes, URL-safe encoded (no characters that
// need quoting in redis.conf or a shell).
func newPassword() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate password: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

func (r *redisClusterReconciler) apply(ctx context.Context, ac runtime.ApplyConfiguration) error {
	if err := r.client.Apply(ctx, ac, client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
		return fmt.Errorf("apply %T: %w", ac, err)
	}
	return nil
}

// writeStatus patches the status once, and only when it changed; condition
// transitions become events.
func (r *redisClusterReconciler) writeStatus(ctx context.Context, rc *v1alpha1.RedisCluster, obs redisObservation) error {
	next := redisClusterStatus(rc.Status, obs)
	if equality.Semantic.DeepEqual(rc.Status, next) {
		return nil
	}
	prev := rc.Status.Conditions
	// The status is computed from the cached object's status (whether the
	// cluster was formed, the last restart): if the cache lags behind our
	// own last write, the patch must fail (Conflict, retried at once with a
	// fresh cache) rather than write a status decided on stale input.
	patch := client.MergeFromWithOptions(rc.DeepCopy(), client.MergeFromWithOptimisticLock{})
	rc.Status = next
	if err := r.client.Status().Patch(ctx, rc, patch); err != nil {
		if apierrors.IsNotFound(err) {
			return nil // deleted meanwhile: nothing left to report on
		}
		return fmt.Errorf("patch RedisCluster status: %w", err)
	}
	// Only for a status that was written: a refused patch is retried and
	// would report its transitions twice.
	r.statusEvents(rc, prev, next.Conditions)
	return nil
}

func (r *redisClusterReconciler) statusEvents(rc *v1alpha1.RedisCluster, prev, next []metav1.Condition) {
	changed := func(typ string) *metav1.Condition {
		n := meta.FindStatusCondition(next, typ)
		p := meta.FindStatusCondition(prev, typ)
		if n == nil || (p != nil && p.Status == n.Status && p.Reason == n.Reason) {
			return nil
		}
		return n
	}
	if c := changed(v1alpha1.ConditionReady); c != nil {
		typ := corev1.EventTypeNormal
		if c.Status != metav1.ConditionTrue {
			typ = corev1.EventTypeWarning
		}
		r.event(rc, typ, c.Reason, "%s", c.Message)
	}
	if c := changed(v1alpha1.ConditionDegraded); c != nil && c.Status == metav1.ConditionTrue && c.Reason != v1alpha1.ReasonScaleInRefused {
		r.event(rc, corev1.EventTypeWarning, c.Reason, "%s", c.Message)
	}
	for _, typ := range healthConditions {
		c := changed(typ)
		p := meta.FindStatusCondition(prev, typ)
		switch {
		case c == nil:
		case c.Status == metav1.ConditionTrue:
			r.event(rc, corev1.EventTypeWarning, c.Reason, "%s: %s", typ, c.Message)
		case c.Status == metav1.ConditionFalse && p != nil && p.Status == metav1.ConditionTrue:
			r.event(rc, corev1.EventTypeNormal, typ+"Resolved", "%s is over", typ)
		}
	}
}

func (r *redisClusterReconciler) event(rc *v1alpha1.RedisCluster, typ, reason, format string, args ...any) {
	if r.recorder != nil {
		r.recorder.Eventf(rc, nil, typ, reason, "Reconcile", format, args...)
	}
}

func shortHash(h string) string { return h[:min(len(h), 12)] }

// redisconfSetArgs is the CONFIG SET of every live setting of conf, or nil.
func redisconfSetArgs(conf redisConfig) []any {
	changes := liveChanges(conf.Directives)
	if len(changes) == 0 {
		return nil
	}
	return redisconf.ConfigSetArgs(changes)
}
