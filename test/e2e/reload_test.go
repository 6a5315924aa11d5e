package e2e

import (
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
)

// configVolume is where the kubelet publishes a pod's gatehouse-config
// volume on the node: files behind a ..data symlink that it swaps
// atomically onto a new timestamped directory on every update.
func configVolume(p *corev1.Pod) string {
	return filepath.Join(env.kubeletRoot, "pods", string(p.UID), "volumes", "kubernetes.io~configmap", "gatehouse-config")
}

func reloadScenarios() {
	It("a policy change reaches the running sidecars through the kubelet's ..data swap, without a restart", func(ctx SpecContext) {
		pods := podsOf(ctx, shop, storefrontLabels)
		Expect(pods).To(HaveLen(2))
		type seen struct {
			data       string
			generation int
			restarts   int32
		}
		before := map[string]seen{}
		for i := range pods {
			p := &pods[i]
			target, err := os.Readlink(filepath.Join(configVolume(p), "..data"))
			Expect(err).NotTo(HaveOccurred(), "the kubelet's ConfigMap volume layout")
			rd, err := sidecarReadiness(p)
			Expect(err).NotTo(HaveOccurred())
			before[p.Name] = seen{data: target, generation: rd.Config.Generation, restarts: restarts(p)[sidecarName]}
		}

		old := renderedHash(ctx)
		mustKubectl("-n", shop, "patch", "cachepolicy", "catalogue-cache", "--type=json", "-p",
			`[{"op":"test","path":"/spec/rules/0/name","value":"products"},{"op":"replace","path":"/spec/rules/0/ttl","value":"4m"}]`)
		hash := sidecarsServe(ctx, old)

		var cm corev1.ConfigMap
		Expect(k8s.Get(ctx, objectKey(shop, "gatehouse-sidecar"), &cm)).To(Succeed())
		for _, p := range podsOf(ctx, shop, storefrontLabels) {
			b := before[p.Name]
			Expect(b.data).NotTo(BeEmpty(), "pod %s is new", p.Name)
			vol := configVolume(&p)
			target, err := os.Readlink(filepath.Join(vol, "..data"))
			Expect(err).NotTo(HaveOccurred())
			Expect(target).NotTo(Equal(b.data), "pod %s: the kubelet swapped ..data", p.Name)
			link, err := os.Readlink(filepath.Join(vol, "config.json"))
			Expect(err).NotTo(HaveOccurred())
			Expect(link).To(Equal("..data/config.json"))
			got, err := os.ReadFile(filepath.Join(vol, "config.json"))
			Expect(err).NotTo(HaveOccurred())
			Expect(string(got)).To(Equal(cm.Data["config.json"]))

			rd, err := sidecarReadiness(&p)
			Expect(err).NotTo(HaveOccurred())
			Expect(rd.Config.Hash).To(Equal(hash))
			Expect(rd.Config.Generation).To(Equal(b.generation+1), "pod %s reloaded once", p.Name)
			Expect(restarts(&p)[sidecarName]).To(Equal(b.restarts), "pod %s: the sidecar was not restarted", p.Name)
		}
		// And the new TTL is what the cache stores with.
		Eventually(func(g Gomega) {
			r := request(appService + "/products/43")
			g.Expect(r.Header("Cache-Status")).To(MatchRegexp(`\bttl=(2[0-3][0-9]|240)\b`), "capped by the new 4m ttl")
		}).WithContext(ctx).WithTimeout(20 * time.Second).WithPolling(time.Second).Should(Succeed())
	})
}
