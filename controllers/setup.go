package controllers

import (
	"flag"
	"fmt"

	ctrl "sigs.k8s.io/controller-runtime"
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
}

// BindFlags registers the options as command-line flags.
func (o *Options) BindFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.SidecarImage, "sidecar-image", "ghcr.io/gatehouse-dev/gatehouse-sidecar:v0.1.0", "Sidecar image injected into pods.")
	o.Injection.BindFlags(fs)
}

// Setup registers every reconciler and webhook with the manager. The manager
// binary and the envtest suite both call it, so tests run exactly what ships.
func Setup(mgr ctrl.Manager, opts Options) error {
	if err := indexPodsWithSidecar(mgr); err != nil {
		return fmt.Errorf("index pods: %w", err)
	}
	// One syncer for the three policy kinds: they all write the same
	// per-namespace ConfigMap.
	syncer := &configSyncer{client: mgr.GetClient()}
	policies := func(setup func(ctrl.Manager, *configSyncer) error) func(ctrl.Manager, Options) error {
		return func(mgr ctrl.Manager, _ Options) error { return setup(mgr, syncer) }
	}
	for name, setup := range map[string]func(ctrl.Manager, Options) error{
		"sessionpolicy":   policies(setupSessionPolicy),
		"ratelimitpolicy": policies(setupRateLimitPolicy),
		"cachepolicy":     policies(setupCachePolicy),
		"pod-injector":    setupPodInjector,
		"rediscluster":    setupRedisCluster,
	} {
		if err := setup(mgr, opts); err != nil {
			return fmt.Errorf("set up %s: %w", name, err)
		}
	}
	return nil
}
