// Package e2e runs Gatehouse on a real one-node Kubernetes cluster
// (hack/e2e/cluster.sh: a real kubelet, containerd, kube-proxy and CoreDNS),
// installed the way the README says, and checks on real pods what a user
// would check. `make e2e` starts the cluster, runs this suite from inside the
// cluster's network namespace and tears the cluster down (docs/e2e.md).
//
// The scenarios run in order, each building on the state the earlier ones
// left (the install, the sample RedisCluster, the app); a failed one does not
// stop the next.
package e2e

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	"github.com/onsi/ginkgo/v2/types"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	gatehousev1alpha1 "github.com/gatehouse-dev/gatehouse/api/v1alpha1"
)

// env is how the suite reaches the cluster; hack/e2e/run.sh sets it.
var env struct {
	// kubectl is the cluster's own kubectl build (E2E_KUBECTL).
	kubectl string
	// kubeletRoot is the kubelet's --root-dir (E2E_KUBELET_ROOT): the suite
	// runs on the node, where the kubelet publishes ConfigMap volumes.
	kubeletRoot string
	// containerdState is containerd's state directory
	// (E2E_CONTAINERD_STATE), where each container's OCI spec lives.
	containerdState string
	// repo is the repository root, for config/.
	repo string
}

// k8s reads and watches the cluster as the assertions need; every change a
// user would make goes through kubectl instead.
var k8s client.Client

func TestE2E(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Gatehouse e2e")
}

var _ = BeforeSuite(func() {
	kubeconfig := os.Getenv("KUBECONFIG")
	Expect(kubeconfig).NotTo(BeEmpty(), "KUBECONFIG is not set: run `make e2e`, or `make e2e-up` and then hack/e2e/run.sh --no-up")
	env.kubectl = os.Getenv("E2E_KUBECTL")
	Expect(env.kubectl).NotTo(BeEmpty(), "E2E_KUBECTL (the cluster's kubectl) is not set: run through hack/e2e/run.sh")
	env.kubeletRoot = os.Getenv("E2E_KUBELET_ROOT")
	Expect(env.kubeletRoot).NotTo(BeEmpty(), "E2E_KUBELET_ROOT is not set: run through hack/e2e/run.sh")
	env.containerdState = os.Getenv("E2E_CONTAINERD_STATE")
	Expect(env.containerdState).NotTo(BeEmpty(), "E2E_CONTAINERD_STATE is not set: run through hack/e2e/run.sh")
	wd, err := os.Getwd()
	Expect(err).NotTo(HaveOccurred())
	env.repo = filepath.Join(wd, "..", "..")

	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	Expect(err).NotTo(HaveOccurred())
	scheme := runtime.NewScheme()
	Expect(clientgoscheme.AddToScheme(scheme)).To(Succeed())
	Expect(gatehousev1alpha1.AddToScheme(scheme)).To(Succeed())
	k8s, err = client.New(cfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
})

var _ = Describe("Gatehouse on a one-node cluster", Ordered, ContinueOnFailure, func() {
	installScenarios()
	redisScenarios()
	injectionScenarios()
	tourScenarios()
	reloadScenarios()
	grpcScenarios()
	faultScenarios()
})

var _ = ReportAfterSuite("summary", func(r Report) {
	printSummary(os.Stdout, r)
})

// printSummary writes the table `make e2e` ends with: every scenario, its
// result and how long it took, then why each failure failed.
func printSummary(w io.Writer, r Report) {
	type row struct{ name, result, took, detail string }
	var rows []row
	width := len("scenario")
	for _, s := range r.SpecReports {
		if s.LeafNodeType != types.NodeTypeIt && !s.State.Is(types.SpecStateFailureStates) {
			continue
		}
		name := s.LeafNodeText
		if s.LeafNodeType != types.NodeTypeIt {
			name = s.LeafNodeType.String()
		}
		rw := row{name: name, took: s.RunTime.Round(100 * time.Millisecond).String()}
		switch {
		case s.State == types.SpecStatePassed:
			rw.result = "passed"
		case s.State.Is(types.SpecStateFailureStates):
			rw.result = "FAILED"
			rw.detail = s.Failure.Message
		default:
			rw.result = s.State.String()
		}
		width = max(width, len(rw.name))
		rows = append(rows, rw)
	}
	resultWidth := len("result")
	for _, r := range rows {
		resultWidth = max(resultWidth, len(r.result))
	}
	fmt.Fprintf(w, "\n%-*s  %-*s  %s\n", width, "scenario", resultWidth, "result", "time")
	fmt.Fprintf(w, "%s  %s  %s\n", strings.Repeat("-", width), strings.Repeat("-", resultWidth), strings.Repeat("-", 8))
	for _, r := range rows {
		fmt.Fprintf(w, "%-*s  %-*s  %s\n", width, r.name, resultWidth, r.result, r.took)
	}
	for _, rw := range rows {
		if rw.detail != "" {
			fmt.Fprintf(w, "\n%s: %s\n", rw.result, rw.name)
			for i, line := range strings.Split(strings.TrimSpace(rw.detail), "\n") {
				if i == 6 {
					fmt.Fprintln(w, "  …")
					break
				}
				if len(line) > 200 {
					line = line[:200] + "…"
				}
				fmt.Fprintf(w, "  %s\n", line)
			}
		}
	}
	fmt.Fprintf(w, "\ntotal %s\n", r.RunTime.Round(time.Second))
}
