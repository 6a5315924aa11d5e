package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/gatehouse-dev/gatehouse/api/v1alpha1"
	"github.com/gatehouse-dev/gatehouse/controllers"
)

func newScheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return nil, fmt.Errorf("scheme: %w", err)
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		return nil, fmt.Errorf("scheme: %w", err)
	}
	return s, nil
}

// startAPIServer starts kube-apiserver and etcd with the CRDs and the
// webhook configuration generated into config/webhook, and writes a
// kubeconfig for the user.
func (d *demo) startAPIServer(ctx context.Context) error {
	d.out.begin("Start a Kubernetes API server and etcd (envtest) with the Gatehouse CRDs")
	scheme, err := newScheme()
	if err != nil {
		return err
	}
	assets, err := shimAssets(filepath.Join(d.tmp, "assets"), d.o.assets)
	if err != nil {
		return err
	}
	d.env = &envtest.Environment{
		Scheme:                scheme,
		CRDDirectoryPaths:     []string{filepath.Join(d.o.root, "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: assets,
		// The API server calls the in-process manager's webhook through the
		// configuration `make manifests` generated; envtest points it at a
		// local port with its own serving certificate.
		WebhookInstallOptions: envtest.WebhookInstallOptions{
			Paths: []string{filepath.Join(d.o.root, "config", "webhook")},
		},
	}
	start := time.Now()
	if d.cfg, err = d.env.Start(); err != nil {
		return fmt.Errorf("start envtest (assets %s): %w", d.o.assets, err)
	}
	if d.k8s, err = client.NewWithWatch(d.cfg, client.Options{Scheme: scheme}); err != nil {
		return fmt.Errorf("client: %w", err)
	}
	user, err := d.env.AddUser(envtest.User{Name: "demo-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return fmt.Errorf("add kubeconfig user: %w", err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	d.kubeconfig = filepath.Join(d.tmp, "kubeconfig")
	if err := os.WriteFile(d.kubeconfig, kc, 0o600); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	// The operator's own namespace, as config/default creates it; the
	// manifest check below applies into it.
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: operatorNS, Labels: map[string]string{controllers.LabelNamespaceInjection: "disabled"}}}
	if err := d.k8s.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s: %w", operatorNS, err)
	}
	d.out.ok("API server at %s (started in %s)", d.cfg.Host, time.Since(start).Round(100*time.Millisecond))
	d.out.say("kubectl against it, from another terminal:")
	d.out.say("  export KUBECONFIG=%s", d.kubeconfig)
	d.out.say("  %s get gatehouse -A", d.kubectl)
	return nil
}

// startManager runs the real manager in-process, wired by the same
// controllers.Setup as cmd/manager.
func (d *demo) startManager(ctx context.Context) error {
	d.out.begin("Start the Gatehouse manager in-process (policy reconcilers, RedisCluster reconciler, injection webhook)")
	d.managerLog = d.logPath("manager")
	f, err := os.Create(d.managerLog)
	if err != nil {
		return fmt.Errorf("manager log: %w", err)
	}
	logger := zap.New(zap.WriteTo(f))
	ctrl.SetLogger(logger)
	klog.SetLogger(logger)

	wh := d.env.WebhookInstallOptions
	mgr, err := ctrl.NewManager(d.cfg, ctrl.Options{
		Scheme:                 d.env.Scheme,
		Cache:                  controllers.CacheOptions(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		WebhookServer: webhook.NewServer(webhook.Options{
			Host: wh.LocalServingHost, Port: wh.LocalServingPort, CertDir: wh.LocalServingCertDir,
		}),
	})
	if err != nil {
		f.Close()
		return fmt.Errorf("new manager: %w", err)
	}
	if err := controllers.Setup(mgr, d.operatorOptions()); err != nil {
		f.Close()
		return fmt.Errorf("controllers.Setup: %w", err)
	}
	mctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	d.stopManager = cancel
	d.managerDone = make(chan error, 1)
	go func() {
		err := mgr.Start(mctx)
		f.Close()
		d.managerDone <- err
	}()
	checker := mgr.GetWebhookServer().StartedChecker()
	if err := poll(ctx, 30*time.Second, func() error {
		select {
		case err := <-d.managerDone:
			d.managerDone <- err
			return errors.Join(errors.New("manager exited"), err)
		default:
		}
		return checker(nil)
	}); err != nil {
		return fmt.Errorf("webhook server: %w", err)
	}
	d.out.ok("manager running; webhook serving on %s:%d; log: %s", wh.LocalServingHost, wh.LocalServingPort, d.managerLog)
	return nil
}

// applySamples applies config/samples (kustomize-built by the assets'
// kubectl, applied server-side through the Go client).
func (d *demo) applySamples(ctx context.Context) error {
	d.out.begin("Apply config/samples (namespace shop, RedisCluster, SessionPolicy, RateLimitPolicy, CachePolicy)")
	cmd := exec.CommandContext(ctx, d.kubectl, "kustomize", filepath.Join(d.o.root, "config", "samples"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	docs, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("kubectl kustomize config/samples: %w: %s", err, stderr.String())
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(docs), 4096)
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return fmt.Errorf("decode samples: %w", err)
		}
		if len(u.Object) == 0 {
			continue
		}
		if err := d.k8s.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(fieldOwner), client.ForceOwnership); err != nil {
			return fmt.Errorf("apply %s %s: %w", u.GetKind(), u.GetName(), err)
		}
		d.out.ok("%s/%s applied", u.GetKind(), u.GetName())
	}
	return nil
}

// waitPolicies waits until the three policies report Ready and the
// namespace's sidecar ConfigMap carries all of them.
func (d *demo) waitPolicies(ctx context.Context) error {
	d.out.begin("Wait for the policies to be Ready and the sidecar ConfigMap rendered")
	start := time.Now()
	objs := []client.Object{&v1alpha1.SessionPolicy{}, &v1alpha1.RateLimitPolicy{}, &v1alpha1.CachePolicy{}}
	names := []string{sessionName, rateLimitName, cacheName}
	for i, obj := range objs {
		err := poll(ctx, 60*time.Second, func() error {
			if err := d.k8s.Get(ctx, client.ObjectKey{Namespace: shopNamespace, Name: names[i]}, obj); err != nil {
				return err
			}
			conds, gen, observed := policyStatus(obj)
			c := meta.FindStatusCondition(conds, v1alpha1.ConditionReady)
			if c == nil || c.Status != metav1.ConditionTrue || observed != gen {
				return fmt.Errorf("%T %s not Ready yet: %v", obj, names[i], c)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	var cm corev1.ConfigMap
	if err := d.k8s.Get(ctx, client.ObjectKey{Namespace: shopNamespace, Name: controllers.SidecarConfigMapName}, &cm); err != nil {
		return fmt.Errorf("sidecar ConfigMap: %w", err)
	}
	d.out.ok("SessionPolicy, RateLimitPolicy and CachePolicy Ready in %s", time.Since(start).Round(100*time.Millisecond))
	d.out.ok("ConfigMap %s/%s rendered, %s %s", shopNamespace, controllers.SidecarConfigMapName, controllers.AnnotationConfigHash, cm.Annotations[controllers.AnnotationConfigHash])
	return nil
}

func policyStatus(obj client.Object) ([]metav1.Condition, int64, int64) {
	switch p := obj.(type) {
	case *v1alpha1.SessionPolicy:
		return p.Status.Conditions, p.Generation, p.Status.ObservedGeneration
	case *v1alpha1.RateLimitPolicy:
		return p.Status.Conditions, p.Generation, p.Status.ObservedGeneration
	case *v1alpha1.CachePolicy:
		return p.Status.Conditions, p.Generation, p.Status.ObservedGeneration
	}
	return nil, 0, -1
}

// validateManifests has the API server validate the install manifests,
// both the way `make deploy` applies them (server-side apply) and the plain
// `kubectl apply -k config/default` of the documentation, without
// persisting anything.
func (d *demo) validateManifests(ctx context.Context) error {
	d.out.begin("Validate the install manifests against the API server (dry runs of config/default)")
	for _, args := range [][]string{
		{"apply", "--server-side", "--force-conflicts", "--field-manager=" + fieldOwner, "--dry-run=server", "-k", "config/default"},
		{"apply", "--dry-run=server", "-k", "config/default"},
	} {
		out, err := d.runKubectl(ctx, args...)
		if err != nil {
			return err
		}
		n := bytes.Count([]byte(out), []byte("(server dry run)"))
		if n == 0 {
			return fmt.Errorf("kubectl printed no dry-run result:\n%s", out)
		}
		d.out.ok("%d objects accepted by the API server (dry run)", n)
	}
	return nil
}
