package controllers

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/gatehouse-dev/gatehouse/internal/docstest"
)

// The worked example of docs/grpc.md: its Deployment's pod, admitted with
// its Service in the namespace, gets the sidecar arguments the doc shows,
// and the ports it describes.
func TestDocsGRPCInjection(t *testing.T) {
	objs := strings.Split(docstest.Block(t, "../docs/grpc.md", "grpc.md:deployment"), "\n---\n")
	if len(objs) != 2 {
		t.Fatalf("want a Deployment and a Service, got %d objects", len(objs))
	}
	var deploy appsv1.Deployment
	var svc corev1.Service
	if err := yaml.UnmarshalStrict([]byte(objs[0]), &deploy); err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict([]byte(objs[1]), &svc); err != nil {
		t.Fatal(err)
	}
	var want struct {
		Args []string `json:"args"`
	}
	if err := yaml.UnmarshalStrict([]byte(docstest.Block(t, "../docs/grpc.md", "grpc.md:injected-args")), &want); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{ObjectMeta: deploy.Spec.Template.ObjectMeta, Spec: deploy.Spec.Template.Spec}
	pod.Namespace = deploy.Namespace
	p := testParams()
	p.Services = []corev1.Service{svc}
	res, err := injectSidecar(pod, p)
	if err != nil || !res.Injected {
		t.Fatalf("injectSidecar: %v %+v", err, res)
	}
	sc := res.Pod.Spec.InitContainers[0]
	if diff := cmp.Diff(want.Args, sc.Args); diff != "" {
		t.Errorf("injected args differ from docs/grpc.md (-doc +injected):\n%s", diff)
	}
	if sc.Ports[0].Name != "grpc" || sc.Ports[0].ContainerPort != 15080 || res.Pod.Spec.Containers[0].Ports[0].Name != "app-grpc" {
		t.Errorf("ports: sidecar %+v, app %+v", sc.Ports[0], res.Pod.Spec.Containers[0].Ports[0])
	}

	// Either the port name or the Service alone makes it h2c, as the doc says.
	alone := pod.DeepCopy()
	p.Services = nil
	if res, _ := injectSidecar(alone, p); !slices.Contains(res.Pod.Spec.InitContainers[0].Args, "--upstream-protocol=h2c") {
		t.Error("the port name grpc alone did not give h2c")
	}
	renamed := pod.DeepCopy()
	renamed.Spec.Containers[0].Ports[0].Name = "http"
	svcHTTP := svc.DeepCopy()
	svcHTTP.Spec.Ports[0].TargetPort.StrVal = "http"
	p.Services = []corev1.Service{*svcHTTP}
	if res, _ := injectSidecar(renamed, p); !slices.Contains(res.Pod.Spec.InitContainers[0].Args, "--upstream-protocol=h2c") {
		t.Error("the Service's appProtocol alone did not give h2c")
	}
}
