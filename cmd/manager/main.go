// Command manager runs the Gatehouse operator: the policy and RedisCluster
// reconcilers and the pod-injection webhook.
package main

import (
	"flag"
	"fmt"
	"os"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	gatehousev1alpha1 "github.com/gatehouse-dev/gatehouse/api/v1alpha1"
	"github.com/gatehouse-dev/gatehouse/controllers"
)

const usageHead = `Usage: manager [flags]

The Gatehouse operator: the SessionPolicy, RateLimitPolicy, CachePolicy and
RedisCluster reconcilers and the pod-injection webhook, against the cluster
of the kubeconfig (in a pod: its service account). docs/operator.md.

Flags:
`

func main() {
	var (
		metricsAddr   string
		probeAddr     string
		leaderElect   bool
		webhookPort   int
		certDir       string
		secureMetrics bool
	)
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":8443", "Address of the metrics endpoint; 0 disables it.")
	flag.BoolVar(&secureMetrics, "metrics-secure", true, "Serve metrics over HTTPS, to scrapers authenticated by TokenReview and authorized by "+
		"SubjectAccessReview (the metrics-reader ClusterRole); false serves plain HTTP to anyone.")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "Address of the /healthz and /readyz endpoints.")
	flag.BoolVar(&leaderElect, "leader-elect", false, "Elect a leader so only one manager reconciles at a time.")
	flag.IntVar(&webhookPort, "webhook-port", 9443, "Port of the pod-injection webhook server.")
	flag.StringVar(&certDir, "webhook-cert-dir", "", "Directory with the webhook's tls.crt and tls.key (default: controller-runtime's).")
	opts := controllers.Options{}
	opts.BindFlags(flag.CommandLine)
	zapOpts := zap.Options{}
	zapOpts.BindFlags(flag.CommandLine)
	// -h and --help print this and exit 0 (flag.ExitOnError); every flag is
	// listed in docs/operator.md.
	flag.Usage = func() {
		out := flag.CommandLine.Output()
		fmt.Fprint(out, usageHead)
		flag.PrintDefaults()
	}
	flag.Parse()

	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	log := ctrl.Log.WithName("setup")

	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(gatehousev1alpha1.AddToScheme(scheme))

	mgr, err := ctrl.NewManager(ctrl.GetConfigOrDie(), ctrl.Options{
		Scheme:                 scheme,
		Cache:                  controllers.CacheOptions(),
		Metrics:                controllers.MetricsOptions(metricsAddr, secureMetrics),
		WebhookServer:          webhook.NewServer(webhook.Options{Port: webhookPort, CertDir: certDir}),
		HealthProbeBindAddress: probeAddr,
		LeaderElection:         leaderElect,
		LeaderElectionID:       "gatehouse.dev",
	})
	if err != nil {
		log.Error(err, "Unable to create manager")
		os.Exit(1)
	}
	if err := controllers.Setup(mgr, opts); err != nil {
		log.Error(err, "Unable to set up controllers")
		os.Exit(1)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		log.Error(err, "Unable to set up health check")
		os.Exit(1)
	}
	if err := mgr.AddReadyzCheck("readyz", mgr.GetWebhookServer().StartedChecker()); err != nil {
		log.Error(err, "Unable to set up ready check")
		os.Exit(1)
	}

	log.Info("Starting manager")
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		log.Error(err, "Manager exited with an error")
		os.Exit(1)
	}
}
