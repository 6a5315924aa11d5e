package controllers

import (
	"flag"
	"fmt"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// Options are the operator's settings, shared by the reconcilers and the
// injection webhook.
type Options struct {
	// SidecarImage is the sidecar image injected into pods (pin it).
	SidecarImage string
	// Injection configures the pod-injection webhook (podinjector.go).
	Injection InjectionOptions
	// RedisMembers names the redis-server nodes of each RedisCluster; nil
	// means the pods of its StatefulSet. Tests and the local demo use
	// LocalRedisMembers.
	RedisMembers RedisMemberSource
	// RenderDelay is how long a namespace's changes gather before it is
	// rendered; zero means DefaultRenderDelay.
	RenderDelay time.Duration
}

// BindFlags registers the options as command-line flags.
func (o *Options) BindFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.SidecarImage, "sidecar-image", "ghcr.io/gatehouse-dev/gatehouse-sidecar:v0.1.0", "Sidecar image injected into pods.")
	fs.DurationVar(&o.RenderDelay, "render-delay", DefaultRenderDelay, "How long a namespace's policy changes gather before one render writes its sidecar configuration.")
	o.Injection.BindFlags(fs)
}

// MetricsOptions is how the manager serves its metrics. Secure serving is
// HTTPS behind authentication and authorization, as the kubebuilder
// scaffold wires it: each scrape's bearer token goes through a TokenReview
// and its right to GET /metrics through a SubjectAccessReview (grant it with
// the metrics-reader ClusterRole). The manager binary and the test of the
// filter both use it, so the test checks what ships.
func MetricsOptions(bindAddress string, secure bool) metricsserver.Options {
	o := metricsserver.Options{BindAddress: bindAddress, SecureServing: secure}
	if secure {
		o.FilterProvider = filters.WithAuthenticationAndAuthorization
	}
	return o
}

// Setup registers every reconciler and webhook with the manager. The manager
// binary and the envtest suite both call it, so tests run exactly what ships.
func Setup(mgr ctrl.Manager, opts Options) error {
	for name, setup := range map[string]func(ctrl.Manager, Options) error{
		"sidecarconfig": setupSidecarConfig,
		"pod-injector":  setupPodInjector,
		"rediscluster":  setupRedisCluster,
	} {
		if err := setup(mgr, opts); err != nil {
			return fmt.Errorf("set up %s: %w", name, err)
		}
	}
	return nil
}
