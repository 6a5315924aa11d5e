package controllers

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/gatehouse-dev/gatehouse/sidecar/contract"
)

// AnnotationUpstreamProtocol sets the protocol the sidecar speaks to the
// app, contract.UpstreamH2C or contract.UpstreamHTTP1, over whatever the
// webhook would derive.
const AnnotationUpstreamProtocol = "gatehouse.dev/upstream-protocol"

// GRPCServicePortName is the port name the sidecar takes over when the pod
// has no port named DefaultServicePortName (and no annotation names
// another): a gRPC app's port is commonly named "grpc".
const GRPCServicePortName = "grpc"

// Service appProtocol values (KEP-3726 and IANA service names) that tell
// how the app's port speaks.
var (
	h2cAppProtocols   = []string{"kubernetes.io/h2c", "grpc"}
	http1AppProtocols = []string{"http", "kubernetes.io/http", "kubernetes.io/ws"}
)

// appPort is the app's port the sidecar forwards to, as the pod declares
// it: its name (empty when undeclared or unnamed) and number.
type appPort struct {
	name   string
	number int32
}

// upstreamProtocol decides how the sidecar speaks to the app, first match
// winning:
//
//  1. the pod's AnnotationUpstreamProtocol;
//  2. the appProtocol of the ports, of Services selecting the pod, that
//     route to the app's port (by its name or number) or to the sidecar's
//     (by sidecarPortName or sidecarPort): h2c if any says
//     kubernetes.io/h2c or grpc, else HTTP/1.1 if any says http,
//     kubernetes.io/http or kubernetes.io/ws. A Pod's container ports have
//     no appProtocol field; Services are where Kubernetes records it;
//  3. the port's name: grpc, grpc-*, h2c and h2c-* are h2c (the convention
//     Istio and Knative follow);
//  4. HTTP/1.1.
//
// It returns "" for HTTP/1.1, so that HTTP/1.1 pods' arguments stay as
// they were, and an error for an annotation value it does not know.
func upstreamProtocol(pod *corev1.Pod, app appPort, sidecarPortName string, sidecarPort int32, services []corev1.Service) (string, error) {
	switch v := pod.Annotations[AnnotationUpstreamProtocol]; v {
	case "":
	case contract.UpstreamH2C:
		return contract.UpstreamH2C, nil
	case contract.UpstreamHTTP1:
		return "", nil
	default:
		return "", fmt.Errorf("annotation %s: %q is neither %q nor %q", AnnotationUpstreamProtocol, v, contract.UpstreamH2C, contract.UpstreamHTTP1)
	}
	routes := func(t intstr.IntOrString) bool {
		if t.Type == intstr.String {
			return (app.name != "" && t.StrVal == app.name) || t.StrVal == sidecarPortName
		}
		return t.IntVal == app.number || t.IntVal == sidecarPort
	}
	http1 := false
	for i := range services {
		svc := &services[i]
		// A Service without a selector routes to endpoints someone else
		// manages, not to this pod.
		if svc.Namespace != pod.Namespace || len(svc.Spec.Selector) == 0 ||
			!labels.SelectorFromValidatedSet(svc.Spec.Selector).Matches(labels.Set(pod.Labels)) {
			continue
		}
		for _, sp := range svc.Spec.Ports {
			if sp.AppProtocol == nil || (sp.Protocol != "" && sp.Protocol != corev1.ProtocolTCP) || !routes(sp.TargetPort) {
				continue
			}
			ap := strings.ToLower(*sp.AppProtocol)
			switch {
			case slices.Contains(h2cAppProtocols, ap):
				return contract.UpstreamH2C, nil
			case slices.Contains(http1AppProtocols, ap):
				http1 = true
			}
		}
	}
	if http1 {
		return "", nil
	}
	if h2cPortName(app.name) {
		return contract.UpstreamH2C, nil
	}
	return "", nil
}

// h2cPortName reports whether a port name follows the h2c naming
// convention.
func h2cPortName(name string) bool {
	for _, p := range []string{"grpc", "h2c"} {
		if name == p || strings.HasPrefix(name, p+"-") {
			return true
		}
	}
	return false
}

// declaredPort is the app container port with number n, for the name
// convention when the upstream comes from AnnotationUpstreamPort.
func declaredPort(pod *corev1.Pod, n int32) appPort {
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if p.ContainerPort == n && (p.Protocol == "" || p.Protocol == corev1.ProtocolTCP) {
				return appPort{name: p.Name, number: n}
			}
		}
	}
	return appPort{number: n}
}
