package controllers

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/open-policy-agent/cert-controller/pkg/rotator"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	gatehousev1alpha1 "github.com/gatehouse-dev/gatehouse/api/v1alpha1"
	"github.com/gatehouse-dev/gatehouse/internal/redisnames"
)

// PodInjectorPath is where the manager serves the pod-injection webhook.
const PodInjectorPath = "/mutate-v1-pod"

// Two webhook entries share one handler because "namespace labelled OR pod
// labelled" cannot be one selector: the first takes every pod of an
// opted-in namespace (minus pods labelled inject=false), the second takes
// pods labelled inject=true in the remaining namespaces (minus namespaces
// labelled disabled, like the operator's own). A pod never matches both, so
// it is mutated once. kube-system is excluded from both. failurePolicy=Fail:
// an opted-in pod that starts without its sidecar silently loses session
// checks and rate limits, so an operator outage blocks only opted-in pods;
// the operator's namespace is excluded so it can always come back.
// timeoutSeconds=5: the handler reads only the cache and answers in
// milliseconds; 5s rides out a slow network without stalling controllers
// that create pods for the default 10s.
//
// +kubebuilder:webhookconfiguration:mutating=true,name=pod-injector
// +kubebuilder:webhook:path=/mutate-v1-pod,mutating=true,failurePolicy=fail,sideEffects=None,timeoutSeconds=5,reinvocationPolicy=Never,groups="",resources=pods,verbs=create,versions=v1,name=namespace.inject.gatehouse.dev,admissionReviewVersions=v1,patch=`{"namespaceSelector":{"matchExpressions":[{"key":"gatehouse.dev/injection","operator":"In","values":["enabled"]},{"key":"kubernetes.io/metadata.name","operator":"NotIn","values":["kube-system"]}]},"objectSelector":{"matchExpressions":[{"key":"gatehouse.dev/inject","operator":"NotIn","values":["false"]}]}}`
// +kubebuilder:webhook:path=/mutate-v1-pod,mutating=true,failurePolicy=fail,sideEffects=None,timeoutSeconds=5,reinvocationPolicy=Never,groups="",resources=pods,verbs=create,versions=v1,name=pod.inject.gatehouse.dev,admissionReviewVersions=v1,patch=`{"namespaceSelector":{"matchExpressions":[{"key":"gatehouse.dev/injection","operator":"NotIn","values":["enabled","disabled"]},{"key":"kubernetes.io/metadata.name","operator":"NotIn","values":["kube-system"]}]},"objectSelector":{"matchLabels":{"gatehouse.dev/inject":"true"}}}`

// +kubebuilder:rbac:groups="",resources=namespaces;configmaps,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=services,verbs=list;watch
// +kubebuilder:rbac:groups=gatehouse.dev,resources=redisclusters,verbs=list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingwebhookconfigurations,verbs=get;list;watch
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingwebhookconfigurations,resourceNames=gatehouse-pod-injector,verbs=update;patch

// InjectionOptions configure the pod-injection webhook and its certificate.
type InjectionOptions struct {
	// CertRotation lets the manager run its own CA and serving certificate
	// (cert-controller) and patch the webhook's caBundle. Off when something
	// else provides the certificate (cert-manager, envtest).
	CertRotation bool
	// Namespace is the operator's namespace: never injected, and where the
	// certificate Secret lives.
	Namespace string
	// ServiceName is the webhook Service; the certificate is issued for it.
	ServiceName string
	// CertSecretName is the Secret cert-controller keeps the CA and serving
	// pair in; the manager mounts it as its webhook certificate directory.
	CertSecretName string
	// WebhookConfigName is the MutatingWebhookConfiguration whose caBundle
	// is patched.
	WebhookConfigName string
	// SidecarLogLevel is the injected sidecar's --log-level.
	SidecarLogLevel string
}

// BindFlags registers the injection options as command-line flags.
func (o *InjectionOptions) BindFlags(fs *flag.FlagSet) {
	fs.BoolVar(&o.CertRotation, "webhook-cert-rotation", true, "Generate and rotate the webhook's serving certificate and patch the caBundle (disable when cert-manager provides it).")
	fs.StringVar(&o.Namespace, "operator-namespace", os.Getenv("POD_NAMESPACE"), "Namespace the operator runs in (default $POD_NAMESPACE).")
	fs.StringVar(&o.ServiceName, "webhook-service-name", "gatehouse-webhook-service", "Service in front of the webhook server.")
	fs.StringVar(&o.CertSecretName, "webhook-cert-secret", "gatehouse-webhook-server-cert", "Secret holding the webhook's CA and serving certificate.")
	fs.StringVar(&o.WebhookConfigName, "webhook-config-name", "gatehouse-pod-injector", "MutatingWebhookConfiguration whose caBundle the manager keeps current.")
	fs.StringVar(&o.SidecarLogLevel, "sidecar-log-level", "info", "Log level of injected sidecars (per pod: annotation "+AnnotationLogLevel+").")
}

// defaultSidecarResources are requests sized for a proxy at modest load and
// a memory limit that bounds the in-process cache tier. No CPU limit: CFS
// throttling would add latency to every proxied request.
func defaultSidecarResources() corev1.ResourceRequirements {
	return corev1.ResourceRequirements{
		Requests: corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("50m"),
			corev1.ResourceMemory: resource.MustParse("64Mi"),
		},
		Limits: corev1.ResourceList{
			corev1.ResourceMemory: resource.MustParse("256Mi"),
		},
	}
}

// setupPodInjector registers the webhook and, when enabled, the certificate
// rotator.
func setupPodInjector(mgr ctrl.Manager, opts Options) error {
	inj := opts.Injection
	if inj.CertRotation {
		if err := SetupWebhookCertificates(mgr, inj); err != nil {
			return err
		}
	}
	srv := mgr.GetWebhookServer()
	// Register the informers now so they start and sync with the manager,
	// instead of lazily on the first admission, which would then wait for
	// a full list within the webhook's timeout.
	for _, obj := range []client.Object{metadataOf("Namespace"), metadataOf("ConfigMap"), &gatehousev1alpha1.RedisCluster{}, &corev1.Service{}} {
		if _, err := mgr.GetCache().GetInformer(context.Background(), obj, cache.BlockUntilSynced(false)); err != nil {
			return fmt.Errorf("register informer for %T: %w", obj, err)
		}
	}
	srv.Register(PodInjectorPath, &webhook.Admission{Handler: &podInjector{
		cache:    mgr.GetClient(),
		api:      mgr.GetAPIReader(),
		decoder:  admission.NewDecoder(mgr.GetScheme()),
		image:    opts.SidecarImage,
		opts:     inj,
		recorder: mgr.GetEventRecorder("gatehouse-pod-injector"),
	}})
	return nil
}

// SetupWebhookCertificates makes the manager its own certificate authority
// for the webhook (cert-controller): it keeps a CA and a serving certificate
// for opts.ServiceName in the Secret opts.CertSecretName, patches the caBundle of
// opts.WebhookConfigName, and serves the pair from the webhook server's
// CertDir once the Secret is mounted there.
func SetupWebhookCertificates(mgr ctrl.Manager, opts InjectionOptions) error {
	if opts.Namespace == "" {
		return errors.New("certificate rotation: the operator namespace is unknown: set --operator-namespace or POD_NAMESPACE")
	}
	srv := mgr.GetWebhookServer()
	dsrv, ok := srv.(*webhook.DefaultServer)
	if !ok {
		return fmt.Errorf("certificate rotation: webhook server %T is not controller-runtime's default server", srv)
	}
	// The same defaults controller-runtime applies when it starts the server.
	certDir, certName, keyName := dsrv.Options.CertDir, dsrv.Options.CertName, dsrv.Options.KeyName
	if certDir == "" {
		certDir = filepath.Join(os.TempDir(), "k8s-webhook-server", "serving-certs")
	}
	if certName == "" {
		certName = "tls.crt"
	}
	if keyName == "" {
		keyName = "tls.key"
	}
	loader := &keyPairLoader{certFile: filepath.Join(certDir, certName), keyFile: filepath.Join(certDir, keyName)}
	dsrv.Options.TLSOpts = append(dsrv.Options.TLSOpts, func(c *tls.Config) { c.GetCertificate = loader.GetCertificate })

	dns := opts.ServiceName + "." + opts.Namespace + ".svc"
	err := rotator.AddRotator(mgr, &rotator.CertRotator{
		SecretKey:      types.NamespacedName{Namespace: opts.Namespace, Name: opts.CertSecretName},
		CertDir:        certDir,
		CertName:       certName,
		KeyName:        keyName,
		CAName:         "gatehouse-webhook-ca",
		CAOrganization: "gatehouse",
		DNSName:        dns,
		ExtraDNSNames:  []string{dns + ".cluster.local", opts.ServiceName + "." + opts.Namespace},
		IsReady:        make(chan struct{}),
		Webhooks:       []rotator.WebhookInfo{{Name: opts.WebhookConfigName, Type: rotator.Mutating}},
		FieldOwner:     FieldOwner,
		// Every replica serves the webhook, so every replica must see the
		// certificate; the Secret's resourceVersion serialises writers.
		RequireLeaderElection: false,
		EnableReadinessCheck:  true,
	})
	if err != nil {
		return fmt.Errorf("certificate rotation: %w", err)
	}
	return nil
}

// injections counts what the webhook did with each admitted pod. It is
// registered once, like the other operator metrics, so setting the webhook
// up again (a second manager in tests) shares it.
var injections = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "gatehouse_injections_total",
	Help: "Pod admissions seen by the injection webhook, by result (injected, skipped, error) and reason.",
}, []string{"result", "reason"})

func init() { metrics.Registry.MustRegister(injections) }

// podInjector is the admission handler. It reads only the manager's cache on
// the hot path (namespaces, ConfigMap metadata, RedisClusters).
type podInjector struct {
	cache    client.Reader
	api      client.Reader
	decoder  admission.Decoder
	image    string
	opts     InjectionOptions
	recorder events.EventRecorder
}

func (h *podInjector) Handle(ctx context.Context, req admission.Request) admission.Response {
	log := ctrl.LoggerFrom(ctx).WithValues("namespace", req.Namespace, "uid", req.UID)
	pod := &corev1.Pod{}
	if err := h.decoder.Decode(req, pod); err != nil {
		injections.WithLabelValues("error", "decode").Inc()
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decode pod: %w", err))
	}
	nsLabels, err := h.namespaceLabels(ctx, req.Namespace)
	if err != nil {
		injections.WithLabelValues("error", "namespace").Inc()
		return admission.Errored(http.StatusInternalServerError, err)
	}
	if ok, reason := injectionDecision(req.Namespace, h.opts.Namespace, nsLabels, pod.Labels); !ok {
		injections.WithLabelValues("skipped", reason).Inc()
		return admission.Allowed(reason)
	}
	params, err := h.params(ctx, req.Namespace)
	if err != nil {
		injections.WithLabelValues("error", "cache").Inc()
		return admission.Errored(http.StatusInternalServerError, err)
	}
	res, err := injectSidecar(pod, params)
	if err != nil {
		injections.WithLabelValues("error", reasonInvalid).Inc()
		return admission.Denied("gatehouse sidecar injection: " + err.Error())
	}
	result := "skipped"
	if res.Injected {
		result = "injected"
	}
	injections.WithLabelValues(result, res.Reason).Inc()
	if res.Reason == reasonHostNetwork && !ptr.Deref(req.DryRun, false) {
		h.skippedEvent(pod, req.Namespace, res.Warnings)
	}
	if res.Pod == pod {
		return admission.Allowed(res.Reason).WithWarnings(res.Warnings...)
	}
	raw, err := json.Marshal(res.Pod)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("encode pod: %w", err))
	}
	log.V(1).Info("Mutated pod", "pod", pod.GenerateName+pod.Name, "result", result, "reason", res.Reason)
	return admission.PatchResponseFromRaw(req.Object.Raw, raw).WithWarnings(res.Warnings...)
}

// skippedEvent records, where `kubectl describe` shows it, that an opted-in
// pod runs without the sidecar. The pod does not exist yet (admission runs
// before it is stored, and a controller's pod has no name yet), so the event
// is about the controller that creates it (a DaemonSet's ReplicaSet, a
// Job…), else about the pod by name.
func (h *podInjector) skippedEvent(pod *corev1.Pod, namespace string, warnings []string) {
	if h.recorder == nil {
		return
	}
	ref := &corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: namespace, Name: pod.Name}
	if owner := metav1.GetControllerOfNoCopy(pod); owner != nil {
		ref = &corev1.ObjectReference{APIVersion: owner.APIVersion, Kind: owner.Kind, Namespace: namespace, Name: owner.Name, UID: owner.UID}
	}
	if ref.Name == "" {
		return
	}
	h.recorder.Eventf(ref, nil, corev1.EventTypeWarning, "SidecarNotInjected", "Inject", "%s", strings.Join(warnings, "; "))
}

// namespaceLabels reads the namespace from the cache, falling back to the
// API server for a namespace created moments ago that the informer has not
// seen yet.
func (h *podInjector) namespaceLabels(ctx context.Context, name string) (map[string]string, error) {
	ns := metadataOf("Namespace")
	err := h.cache.Get(ctx, client.ObjectKey{Name: name}, ns)
	if apierrors.IsNotFound(err) || cacheNotStarted(err) {
		err = h.api.Get(ctx, client.ObjectKey{Name: name}, ns)
	}
	if err != nil {
		return nil, fmt.Errorf("get namespace %s: %w", name, err)
	}
	return ns.Labels, nil
}

func (h *podInjector) params(ctx context.Context, namespace string) (injectParams, error) {
	p := injectParams{Image: h.image, LogLevel: h.opts.SidecarLogLevel, Resources: defaultSidecarResources()}

	cm := metadataOf("ConfigMap")
	key := client.ObjectKey{Namespace: namespace, Name: SidecarConfigMapName}
	err := h.cache.Get(ctx, key, cm)
	if cacheNotStarted(err) {
		err = h.api.Get(ctx, key, cm)
	}
	switch {
	case err == nil:
		p.ConfigHash = cm.Annotations[AnnotationConfigHash]
	case apierrors.IsNotFound(err):
		// No policy yet: the sidecar starts with none and the config
		// hash annotation is simply absent.
	default:
		return injectParams{}, fmt.Errorf("get configmap %s/%s: %w", namespace, SidecarConfigMapName, err)
	}

	var clusters gatehousev1alpha1.RedisClusterList
	err = h.cache.List(ctx, &clusters, client.InNamespace(namespace))
	if cacheNotStarted(err) {
		err = h.api.List(ctx, &clusters, client.InNamespace(namespace))
	}
	if err != nil {
		return injectParams{}, fmt.Errorf("list redisclusters in %s: %w", namespace, err)
	}
	for i := range clusters.Items {
		p.Passwords = append(p.Passwords, redisPasswordOf(&clusters.Items[i]))
	}
	// The cache lists in no particular order; a stable env order keeps
	// replicas of one workload identical.
	slices.SortFunc(p.Passwords, func(a, b redisPassword) int { return strings.Compare(a.Env, b.Env) })

	// The Services tell the app's protocol (appProtocol). The RedisCluster
	// reconciler already caches them; a Service created after the pod
	// reaches it at its next restart, like a RedisCluster.
	var services corev1.ServiceList
	err = h.cache.List(ctx, &services, client.InNamespace(namespace))
	if cacheNotStarted(err) {
		err = h.api.List(ctx, &services, client.InNamespace(namespace))
	}
	if err != nil {
		return injectParams{}, fmt.Errorf("list services in %s: %w", namespace, err)
	}
	p.Services = services.Items
	return p, nil
}

// metadataOf is a metadata-only object of a core kind: the webhook needs
// only labels and annotations, and metadata informers do not hold every
// ConfigMap's data in memory.
func metadataOf(kind string) *metav1.PartialObjectMetadata {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind(kind))
	return m
}

// cacheNotStarted is true for admissions that arrive before the manager's
// caches started (the webhook server starts first); they read the API server.
func cacheNotStarted(err error) bool {
	var notStarted *cache.ErrCacheNotStarted
	return errors.As(err, &notStarted)
}

// redisPasswordOf is where a cluster's password lives: the Secret the
// operator reports in status, else the user's reference, else the one the
// operator generates.
func redisPasswordOf(rc *gatehousev1alpha1.RedisCluster) redisPassword {
	pw := redisPassword{Env: redisnames.PasswordEnv(rc.Name), Secret: redisnames.PasswordSecret(rc.Name), Key: "password"}
	if ref := rc.Spec.PasswordSecretRef; ref != nil {
		pw.Secret = ref.Name
		if ref.Key != "" {
			pw.Key = ref.Key
		}
	}
	if rc.Status.PasswordSecret != "" && rc.Status.PasswordSecret != pw.Secret {
		pw.Secret, pw.Key = rc.Status.PasswordSecret, "password"
	}
	return pw
}
