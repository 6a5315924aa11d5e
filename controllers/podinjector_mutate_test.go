package controllers

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	gatehousev1alpha1 "github.com/gatehouse-dev/gatehouse/api/v1alpha1"
)

func testParams() injectParams {
	return injectParams{
		Image:      "sidecar:1",
		ConfigHash: "abc123",
		LogLevel:   "info",
		Resources:  defaultSidecarResources(),
		Passwords:  []redisPassword{{Env: "GATEHOUSE_REDIS_PASSWORD_MAIN", Secret: "main-password", Key: "password"}},
	}
}

func appPod(mutate ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: "ns", Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{
				Name:  "app",
				Image: "app:1",
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}},
			}},
		},
	}
	for _, m := range mutate {
		m(p)
	}
	return p
}

func withAnnotation(k, v string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		if p.Annotations == nil {
			p.Annotations = map[string]string{}
		}
		p.Annotations[k] = v
	}
}

// wantSidecar is the sidecar injected into appPod with testParams, spelled
// out field by field so any change to the contract shows up here.
func wantSidecar() corev1.Container {
	probe := func(path string, failures int32) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromString("gh-status")}},
			PeriodSeconds:    5,
			TimeoutSeconds:   2,
			FailureThreshold: failures,
		}
	}
	return corev1.Container{
		Name:  "gatehouse-sidecar",
		Image: "sidecar:1",
		Args: []string{
			"--config=/etc/gatehouse/config/config.json",
			"--pod-labels=/etc/gatehouse/podinfo/labels",
			"--listen=:15080",
			"--upstream=http://127.0.0.1:8080",
			"--admin-listen=unix:/var/run/gatehouse/admin.sock",
			"--status-listen=:9902",
			"--log-level=info",
		},
		RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways),
		Ports: []corev1.ContainerPort{
			{Name: "http", ContainerPort: 15080, Protocol: corev1.ProtocolTCP},
			{Name: "gh-status", ContainerPort: 9902, Protocol: corev1.ProtocolTCP},
		},
		Env: []corev1.EnvVar{{Name: "GATEHOUSE_REDIS_PASSWORD_MAIN", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: "main-password"}, Key: "password", Optional: new(true),
		}}}},
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
		},
		VolumeMounts: []corev1.VolumeMount{
			{Name: "gatehouse-config", MountPath: "/etc/gatehouse/config", ReadOnly: true},
			{Name: "gatehouse-podinfo", MountPath: "/etc/gatehouse/podinfo", ReadOnly: true},
			{Name: "gatehouse-admin", MountPath: "/var/run/gatehouse"},
		},
		StartupProbe:   probe("/readyz", 12),
		ReadinessProbe: probe("/readyz", 3),
		LivenessProbe:  probe("/healthz", 3),
		// The kubelet runs it when the pod starts terminating, long before
		// the sidecar's SIGTERM.
		Lifecycle: &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{
			Command: []string{"/gatehouse-sidecar", "prestop", "--admin-listen=unix:/var/run/gatehouse/admin.sock"},
		}}},
		SecurityContext: &corev1.SecurityContext{
			RunAsNonRoot:             new(true),
			RunAsUser:                ptr.To[int64](65532),
			RunAsGroup:               ptr.To[int64](65532),
			ReadOnlyRootFilesystem:   new(true),
			AllowPrivilegeEscalation: new(false),
			Privileged:               new(false),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
}

func wantVolumes() []corev1.Volume {
	return []corev1.Volume{
		{Name: "gatehouse-config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: "gatehouse-sidecar"},
			Items:                []corev1.KeyToPath{{Key: "config.json", Path: "config.json"}},
			Optional:             new(true),
		}}},
		{Name: "gatehouse-podinfo", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{
			Items: []corev1.DownwardAPIVolumeFile{{Path: "labels", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}}},
		}}},
		{Name: "gatehouse-admin", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
	}
}

// withProbes gives the app container probes and hooks that name the port
// the sidecar takes over (as name), another named port, and the app's
// port by number.
func withProbes(name string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		c := &p.Spec.Containers[0]
		c.Ports = append(c.Ports, corev1.ContainerPort{Name: "admin", ContainerPort: 8090})
		c.LivenessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/live", Port: intstr.FromString(name)}}}
		c.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromString(name)}}}
		c.StartupProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/up", Port: intstr.FromString("admin")}}}
		c.Lifecycle = &corev1.Lifecycle{
			PostStart: &corev1.LifecycleHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/warm", Port: intstr.FromInt32(8080)}},
			PreStop:   &corev1.LifecycleHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/drain", Port: intstr.FromString(name)}},
		}
	}
}

// withH2C is the injected pod of an h2c app: the one extra argument, right
// after --upstream.
func withH2C(p *corev1.Pod) {
	args := p.Spec.InitContainers[0].Args
	p.Spec.InitContainers[0].Args = append(args[:4:4], append([]string{"--upstream-protocol=h2c"}, args[4:]...)...)
}

func service(namespace string, selector map[string]string, target intstr.IntOrString, appProtocol string) corev1.Service {
	return corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "svc", Namespace: namespace},
		Spec: corev1.ServiceSpec{Selector: selector, Ports: []corev1.ServicePort{{
			Name: "api", Port: 80, TargetPort: target, Protocol: corev1.ProtocolTCP, AppProtocol: new(appProtocol),
		}}},
	}
}

// adminMount is the admin socket's volume, mounted into every app container.
var adminMount = corev1.VolumeMount{Name: "gatehouse-admin", MountPath: "/var/run/gatehouse"}

// drainDelay is the preStop hook an app container without one of its own
// gets: it keeps serving that long after its pod starts terminating.
func drainDelay(seconds int64) *corev1.Lifecycle {
	return &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: seconds}}}
}

// injected is appPod after injection with testParams, modified by mutate.
func injected(mutate ...func(*corev1.Pod)) *corev1.Pod {
	p := appPod()
	p.Spec.Containers[0].Ports[0].Name = "app-http"
	p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{adminMount}
	p.Spec.Containers[0].Lifecycle = drainDelay(5)
	p.Spec.InitContainers = []corev1.Container{wantSidecar()}
	p.Spec.Volumes = wantVolumes()
	p.Annotations = map[string]string{
		"gatehouse.dev/sidecar-version":  "sidecar:1",
		"gatehouse.dev/config-hash":      "abc123",
		"gatehouse.dev/injection-status": "injected",
	}
	for _, m := range mutate {
		m(p)
	}
	return p
}

func TestInjectSidecar(t *testing.T) {
	tests := []struct {
		name         string
		pod          *corev1.Pod
		params       func(*injectParams)
		want         *corev1.Pod
		wantInjected bool
		wantReason   string
		wantWarning  string
	}{
		{
			name:         "named http port is taken over",
			pod:          appPod(),
			want:         injected(),
			wantInjected: true,
			wantReason:   "injected",
		},
		{
			name: "job pod with restartPolicy Never gets a native sidecar, existing init containers after it",
			pod: appPod(func(p *corev1.Pod) {
				p.Spec.RestartPolicy = corev1.RestartPolicyNever
				p.Spec.InitContainers = []corev1.Container{{Name: "migrate", Image: "migrate:1"}}
				p.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
			}),
			want: injected(func(p *corev1.Pod) {
				p.Spec.RestartPolicy = corev1.RestartPolicyNever
				p.Spec.InitContainers = append(p.Spec.InitContainers, corev1.Container{Name: "migrate", Image: "migrate:1"})
				p.Spec.Volumes = append([]corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}, wantVolumes()...)
			}),
			wantInjected: true,
			wantReason:   "injected",
		},
		{
			name:         "job pod with restartPolicy OnFailure",
			pod:          appPod(func(p *corev1.Pod) { p.Spec.RestartPolicy = corev1.RestartPolicyOnFailure }),
			want:         injected(func(p *corev1.Pod) { p.Spec.RestartPolicy = corev1.RestartPolicyOnFailure }),
			wantInjected: true,
			wantReason:   "injected",
		},
		{
			name:       "already injected pod is returned unchanged",
			pod:        injected(),
			want:       injected(),
			wantReason: "already-injected",
		},
		{
			name: "sidecar among regular containers counts as injected",
			pod: appPod(func(p *corev1.Pod) {
				p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "gatehouse-sidecar", Image: "x"})
			}),
			want: appPod(func(p *corev1.Pod) {
				p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "gatehouse-sidecar", Image: "x"})
			}),
			wantReason: "already-injected",
		},
		{
			name: "no named port and no annotation: admitted uninjected with a warning",
			pod:  appPod(func(p *corev1.Pod) { p.Spec.Containers[0].Ports[0].Name = "" }),
			want: appPod(func(p *corev1.Pod) {
				p.Spec.Containers[0].Ports[0].Name = ""
				p.Annotations = map[string]string{"gatehouse.dev/injection-status": "skipped: no-upstream-port"}
			}),
			wantReason:  "no-upstream-port",
			wantWarning: `no container port named "http" or "grpc" and no gatehouse.dev/upstream-port annotation`,
		},
		{
			name: "upstream-port annotation: sidecar port named gatehouse, app ports untouched",
			pod: appPod(withAnnotation("gatehouse.dev/upstream-port", "3000"), func(p *corev1.Pod) {
				p.Spec.Containers[0].Ports = nil
			}),
			want: injected(withAnnotation("gatehouse.dev/upstream-port", "3000"), func(p *corev1.Pod) {
				p.Spec.Containers[0].Ports = nil
				p.Spec.InitContainers[0].Args[3] = "--upstream=http://127.0.0.1:3000"
				p.Spec.InitContainers[0].Ports[0].Name = "gatehouse"
			}),
			wantInjected: true,
			wantReason:   "injected",
		},
		{
			name:         "named port wins over upstream-port annotation",
			pod:          appPod(withAnnotation("gatehouse.dev/upstream-port", "3000")),
			want:         injected(withAnnotation("gatehouse.dev/upstream-port", "3000")),
			wantInjected: true,
			wantReason:   "injected",
		},
		{
			name: "service-port-name annotation picks another port, second container",
			pod: appPod(withAnnotation("gatehouse.dev/service-port-name", "web"), func(p *corev1.Pod) {
				p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "ui", Image: "ui:1",
					Ports: []corev1.ContainerPort{{Name: "web", ContainerPort: 3000}}})
			}),
			want: injected(withAnnotation("gatehouse.dev/service-port-name", "web"), func(p *corev1.Pod) {
				p.Spec.Containers[0].Ports[0].Name = "http"
				p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "ui", Image: "ui:1",
					Ports: []corev1.ContainerPort{{Name: "app-web", ContainerPort: 3000}}, VolumeMounts: []corev1.VolumeMount{adminMount},
					Lifecycle: drainDelay(5)})
				p.Spec.InitContainers[0].Args[3] = "--upstream=http://127.0.0.1:3000"
				p.Spec.InitContainers[0].Ports[0].Name = "web"
			}),
			wantInjected: true,
			wantReason:   "injected",
		},
		{
			name: "long port name is shortened to 15 characters",
			pod: appPod(withAnnotation("gatehouse.dev/service-port-name", "metrics-public"), func(p *corev1.Pod) {
				p.Spec.Containers[0].Ports[0].Name = "metrics-public"
			}),
			want: injected(withAnnotation("gatehouse.dev/service-port-name", "metrics-public"), func(p *corev1.Pod) {
				p.Spec.Containers[0].Ports[0].Name = "app-metrics-pub"
				p.Spec.InitContainers[0].Ports[0].Name = "metrics-public"
			}),
			wantInjected: true,
			wantReason:   "injected",
		},
		{
			name: "UDP port of that name is not an HTTP upstream",
			pod: appPod(func(p *corev1.Pod) {
				p.Spec.Containers[0].Ports[0].Protocol = corev1.ProtocolUDP
			}),
			want: appPod(func(p *corev1.Pod) {
				p.Spec.Containers[0].Ports[0].Protocol = corev1.ProtocolUDP
				p.Annotations = map[string]string{"gatehouse.dev/injection-status": "skipped: no-upstream-port"}
			}),
			wantReason:  "no-upstream-port",
			wantWarning: "pod not injected",
		},
		{
			name: "sidecar-image annotation overrides the image and the version annotation",
			pod:  appPod(withAnnotation("gatehouse.dev/sidecar-image", "mirror/sidecar:2")),
			want: injected(withAnnotation("gatehouse.dev/sidecar-image", "mirror/sidecar:2"), func(p *corev1.Pod) {
				p.Spec.InitContainers[0].Image = "mirror/sidecar:2"
				p.Annotations["gatehouse.dev/sidecar-version"] = "mirror/sidecar:2"
			}),
			wantInjected: true,
			wantReason:   "injected",
		},
		{
			name: "resource annotations override, add and remove",
			pod: appPod(
				withAnnotation("gatehouse.dev/sidecar-cpu-request", "100m"),
				withAnnotation("gatehouse.dev/sidecar-cpu-limit", "1"),
				withAnnotation("gatehouse.dev/sidecar-memory-request", "128Mi"),
				withAnnotation("gatehouse.dev/sidecar-memory-limit", "0"),
			),
			want: injected(
				withAnnotation("gatehouse.dev/sidecar-cpu-request", "100m"),
				withAnnotation("gatehouse.dev/sidecar-cpu-limit", "1"),
				withAnnotation("gatehouse.dev/sidecar-memory-request", "128Mi"),
				withAnnotation("gatehouse.dev/sidecar-memory-limit", "0"),
				func(p *corev1.Pod) {
					p.Spec.InitContainers[0].Resources = corev1.ResourceRequirements{
						Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
						Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")},
					}
				}),
			wantInjected: true,
			wantReason:   "injected",
		},
		{
			name: "sidecar-port and log-level annotations",
			pod:  appPod(withAnnotation("gatehouse.dev/sidecar-port", "16000"), withAnnotation("gatehouse.dev/sidecar-log-level", "debug")),
			want: injected(withAnnotation("gatehouse.dev/sidecar-port", "16000"), withAnnotation("gatehouse.dev/sidecar-log-level", "debug"), func(p *corev1.Pod) {
				p.Spec.InitContainers[0].Args[2] = "--listen=:16000"
				p.Spec.InitContainers[0].Args[6] = "--log-level=debug"
				p.Spec.InitContainers[0].Ports[0].ContainerPort = 16000
			}),
			wantInjected: true,
			wantReason:   "injected",
		},
		{
			// Per-pod path exceptions (docs/security.md#per-pod-exceptions)
			// and proxy settings reach the sidecar as its own flags, after
			// the ones every sidecar gets.
			name: "flag annotations: path exceptions and proxy settings",
			pod: appPod(
				withAnnotation("gatehouse.dev/allow-encoded-slash", "true"),
				withAnnotation("gatehouse.dev/allow-path-parameters", "true"),
				withAnnotation("gatehouse.dev/trusted-proxies", "10.0.0.0/8, 192.168.1.10"),
				withAnnotation("gatehouse.dev/write-timeout", "2m"),
				withAnnotation("gatehouse.dev/body-read-timeout", " 90s "),
			),
			want: injected(
				withAnnotation("gatehouse.dev/allow-encoded-slash", "true"),
				withAnnotation("gatehouse.dev/allow-path-parameters", "true"),
				withAnnotation("gatehouse.dev/trusted-proxies", "10.0.0.0/8, 192.168.1.10"),
				withAnnotation("gatehouse.dev/write-timeout", "2m"),
				withAnnotation("gatehouse.dev/body-read-timeout", " 90s "),
				func(p *corev1.Pod) {
					p.Spec.InitContainers[0].Args = append(p.Spec.InitContainers[0].Args,
						"--allow-encoded-slash=true", "--allow-path-parameters=true",
						"--trusted-proxies=10.0.0.0/8,192.168.1.10", "--write-timeout=2m0s", "--body-read-timeout=1m30s")
				}),
			wantInjected: true,
			wantReason:   "injected",
		},
		{
			name:         "flag annotations saying false add nothing",
			pod:          appPod(withAnnotation("gatehouse.dev/allow-encoded-slash", "false")),
			want:         injected(withAnnotation("gatehouse.dev/allow-encoded-slash", "false")),
			wantInjected: true,
			wantReason:   "injected",
		},
		{
			name: "hostNetwork pod: admitted uninjected with a warning",
			pod:  appPod(func(p *corev1.Pod) { p.Spec.HostNetwork = true }),
			want: appPod(func(p *corev1.Pod) {
				p.Spec.HostNetwork = true
				p.Annotations = map[string]string{"gatehouse.dev/injection-status": "skipped: host-network"}
			}),
			wantReason:  "host-network",
			wantWarning: "hostNetwork: true",
		},
		{
			name: "loopback admin API on opt-in: no socket volume",
			pod:  appPod(withAnnotation("gatehouse.dev/sidecar-admin-listen", "loopback")),
			want: injected(withAnnotation("gatehouse.dev/sidecar-admin-listen", "loopback"), func(p *corev1.Pod) {
				p.Spec.Containers[0].VolumeMounts = nil
				p.Spec.InitContainers[0].Args[4] = "--admin-listen=127.0.0.1:9901"
				p.Spec.InitContainers[0].Lifecycle.PreStop.Exec.Command[2] = "--admin-listen=127.0.0.1:9901"
				p.Spec.InitContainers[0].VolumeMounts = p.Spec.InitContainers[0].VolumeMounts[:2]
				p.Spec.Volumes = p.Spec.Volumes[:2]
			}),
			wantInjected: true,
			wantReason:   "injected",
		},
		{
			name: "the admin socket frees port 9901 for the app",
			pod: appPod(func(p *corev1.Pod) {
				p.Spec.Containers[0].Ports = append(p.Spec.Containers[0].Ports, corev1.ContainerPort{Name: "debug", ContainerPort: 9901})
			}),
			want: injected(func(p *corev1.Pod) {
				p.Spec.Containers[0].Ports = append(p.Spec.Containers[0].Ports, corev1.ContainerPort{Name: "debug", ContainerPort: 9901})
			}),
			wantInjected: true,
			wantReason:   "injected",
		},
		{
			name:         "probes and hooks naming the taken-over port follow it; numeric and other ports stay",
			pod:          appPod(withProbes("http")),
			want:         injected(withProbes("app-http")),
			wantInjected: true,
			wantReason:   "injected",
		},
		{
			// A gRPC server's port is commonly named grpc: taken over
			// without an annotation, and spoken to in h2c, since a gRPC
			// server cannot read HTTP/1.1.
			name: "a port named grpc is taken over when none is named http, and gets h2c",
			pod:  appPod(func(p *corev1.Pod) { p.Spec.Containers[0].Ports[0].Name = "grpc" }),
			want: injected(func(p *corev1.Pod) {
				p.Spec.Containers[0].Ports[0].Name = "app-grpc"
				p.Spec.InitContainers[0].Ports[0].Name = "grpc"
				withH2C(p)
			}),
			wantInjected: true,
			wantReason:   "injected",
		},
		{
			name: "http wins over grpc when the pod has both; plain http stays HTTP/1.1",
			pod: appPod(func(p *corev1.Pod) {
				p.Spec.Containers[0].Ports = append(p.Spec.Containers[0].Ports, corev1.ContainerPort{Name: "grpc", ContainerPort: 9090})
			}),
			want: injected(func(p *corev1.Pod) {
				p.Spec.Containers[0].Ports = append(p.Spec.Containers[0].Ports, corev1.ContainerPort{Name: "grpc", ContainerPort: 9090})
			}),
			wantInjected: true,
			wantReason:   "injected",
		},
		{
			name:         "the upstream-protocol annotation makes an http port h2c",
			pod:          appPod(withAnnotation("gatehouse.dev/upstream-protocol", "h2c")),
			want:         injected(withAnnotation("gatehouse.dev/upstream-protocol", "h2c"), withH2C),
			wantInjected: true,
			wantReason:   "injected",
		},
		{
			name: "a Service's appProtocol kubernetes.io/h2c on the taken-over port",
			pod:  appPod(),
			params: func(p *injectParams) {
				p.Services = []corev1.Service{service("ns", map[string]string{"app": "web"}, intstr.FromString("http"), "kubernetes.io/h2c")}
			},
			want:         injected(withH2C),
			wantInjected: true,
			wantReason:   "injected",
		},
		{
			name: "upstream-port annotation and a Service targeting the sidecar's port with appProtocol grpc",
			pod: appPod(withAnnotation("gatehouse.dev/upstream-port", "3000"), func(p *corev1.Pod) {
				p.Spec.Containers[0].Ports = nil
			}),
			params: func(p *injectParams) {
				p.Services = []corev1.Service{service("ns", map[string]string{"app": "web"}, intstr.FromInt32(15080), "grpc")}
			},
			want: injected(withAnnotation("gatehouse.dev/upstream-port", "3000"), func(p *corev1.Pod) {
				p.Spec.Containers[0].Ports = nil
				p.Spec.InitContainers[0].Args[3] = "--upstream=http://127.0.0.1:3000"
				p.Spec.InitContainers[0].Ports[0].Name = "gatehouse"
				withH2C(p)
			}),
			wantInjected: true,
			wantReason:   "injected",
		},
		{
			name:         "drain delay from the annotation",
			pod:          appPod(withAnnotation("gatehouse.dev/drain-delay-seconds", "12")),
			want:         injected(withAnnotation("gatehouse.dev/drain-delay-seconds", "12"), func(p *corev1.Pod) { p.Spec.Containers[0].Lifecycle = drainDelay(12) }),
			wantInjected: true,
			wantReason:   "injected",
		},
		{
			name:         "drain delay 0: no hook added, the sidecar's own hook stays",
			pod:          appPod(withAnnotation("gatehouse.dev/drain-delay-seconds", "0")),
			want:         injected(withAnnotation("gatehouse.dev/drain-delay-seconds", "0"), func(p *corev1.Pod) { p.Spec.Containers[0].Lifecycle = nil }),
			wantInjected: true,
			wantReason:   "injected",
		},
		{
			// The API server refuses a sleep longer than the grace period,
			// and one as long leaves the app no time for SIGTERM.
			name: "the default drain delay stays below a short grace period, silently",
			pod:  appPod(func(p *corev1.Pod) { p.Spec.TerminationGracePeriodSeconds = ptr.To[int64](4) }),
			want: injected(func(p *corev1.Pod) {
				p.Spec.TerminationGracePeriodSeconds = ptr.To[int64](4)
				p.Spec.Containers[0].Lifecycle = drainDelay(3)
			}),
			wantInjected: true,
			wantReason:   "injected",
		},
		{
			name: "an annotated drain delay as long as the grace period is shortened, with a warning",
			pod: appPod(withAnnotation("gatehouse.dev/drain-delay-seconds", "60"), func(p *corev1.Pod) {
				p.Spec.TerminationGracePeriodSeconds = ptr.To[int64](60)
			}),
			want: injected(withAnnotation("gatehouse.dev/drain-delay-seconds", "60"), func(p *corev1.Pod) {
				p.Spec.TerminationGracePeriodSeconds = ptr.To[int64](60)
				p.Spec.Containers[0].Lifecycle = drainDelay(59)
			}),
			wantInjected: true,
			wantReason:   "injected",
			wantWarning:  "gatehouse.dev/drain-delay-seconds: 60 s shortened to 59 s, below the pod's terminationGracePeriodSeconds (60)",
		},
		{
			name: "a grace period of 1 s leaves no room for a delay",
			pod:  appPod(func(p *corev1.Pod) { p.Spec.TerminationGracePeriodSeconds = ptr.To[int64](1) }),
			want: injected(func(p *corev1.Pod) {
				p.Spec.TerminationGracePeriodSeconds = ptr.To[int64](1)
				p.Spec.Containers[0].Lifecycle = nil
			}),
			wantInjected: true,
			wantReason:   "injected",
		},
		{
			name: "every app container without a preStop gets the delay; one with its own keeps it; postStart stays",
			pod: appPod(func(p *corev1.Pod) {
				p.Spec.Containers[0].Lifecycle = &corev1.Lifecycle{PostStart: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"warm"}}}}
				p.Spec.Containers = append(p.Spec.Containers,
					corev1.Container{Name: "worker", Image: "worker:1"},
					corev1.Container{Name: "flusher", Image: "flusher:1", Lifecycle: &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"flush"}}}}})
			}),
			want: injected(func(p *corev1.Pod) {
				p.Spec.Containers[0].Lifecycle = &corev1.Lifecycle{
					PostStart: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"warm"}}},
					PreStop:   &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 5}},
				}
				p.Spec.Containers = append(p.Spec.Containers,
					corev1.Container{Name: "worker", Image: "worker:1", VolumeMounts: []corev1.VolumeMount{adminMount}, Lifecycle: drainDelay(5)},
					corev1.Container{Name: "flusher", Image: "flusher:1", VolumeMounts: []corev1.VolumeMount{adminMount},
						Lifecycle: &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"flush"}}}}})
			}),
			wantInjected: true,
			wantReason:   "injected",
		},
		{
			name:   "no config hash and no redis clusters: no annotation, no env",
			pod:    appPod(),
			params: func(p *injectParams) { p.ConfigHash = ""; p.Passwords = nil },
			want: injected(func(p *corev1.Pod) {
				delete(p.Annotations, "gatehouse.dev/config-hash")
				p.Spec.InitContainers[0].Env = []corev1.EnvVar{}
			}),
			wantInjected: true,
			wantReason:   "injected",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			params := testParams()
			if tt.params != nil {
				tt.params(&params)
			}
			before := tt.pod.DeepCopy()
			got, err := injectSidecar(tt.pod, params)
			if err != nil {
				t.Fatalf("injectSidecar: %v", err)
			}
			if diff := cmp.Diff(before, tt.pod); diff != "" {
				t.Errorf("input pod modified (-before +after):\n%s", diff)
			}
			if diff := cmp.Diff(tt.want, got.Pod); diff != "" {
				t.Errorf("pod (-want +got):\n%s", diff)
			}
			if got.Injected != tt.wantInjected || got.Reason != tt.wantReason {
				t.Errorf("injected, reason = %v, %q; want %v, %q", got.Injected, got.Reason, tt.wantInjected, tt.wantReason)
			}
			switch {
			case tt.wantWarning == "" && len(got.Warnings) > 0:
				t.Errorf("unexpected warnings %q", got.Warnings)
			case tt.wantWarning != "" && (len(got.Warnings) != 1 || !strings.Contains(got.Warnings[0], tt.wantWarning)):
				t.Errorf("warnings = %q, want one containing %q", got.Warnings, tt.wantWarning)
			}

			// Re-admission of the result never changes it.
			again, err := injectSidecar(got.Pod, params)
			if err != nil {
				t.Fatalf("re-inject: %v", err)
			}
			if diff := cmp.Diff(got.Pod, again.Pod); diff != "" && got.Injected {
				t.Errorf("re-injection changed the pod (-first +second):\n%s", diff)
			}
			if got.Injected && (again.Injected || again.Reason != reasonAlreadyInjected) {
				t.Errorf("re-injection: injected=%v reason=%q", again.Injected, again.Reason)
			}
		})
	}
}

func TestInjectSidecarDenies(t *testing.T) {
	tests := []struct {
		name string
		pod  *corev1.Pod
		want string
	}{
		{"invalid cpu request", appPod(withAnnotation("gatehouse.dev/sidecar-cpu-request", "lots")), `annotation gatehouse.dev/sidecar-cpu-request: invalid quantity "lots"`},
		{"invalid cpu limit", appPod(withAnnotation("gatehouse.dev/sidecar-cpu-limit", "1x")), `annotation gatehouse.dev/sidecar-cpu-limit: invalid quantity "1x"`},
		{"invalid memory request", appPod(withAnnotation("gatehouse.dev/sidecar-memory-request", "64 MB")), `annotation gatehouse.dev/sidecar-memory-request: invalid quantity "64 MB"`},
		{"invalid memory limit", appPod(withAnnotation("gatehouse.dev/sidecar-memory-limit", "")), `annotation gatehouse.dev/sidecar-memory-limit: invalid quantity ""`},
		{"negative quantity", appPod(withAnnotation("gatehouse.dev/sidecar-memory-request", "-1Mi")), `annotation gatehouse.dev/sidecar-memory-request: negative quantity "-1Mi"`},
		{"request above limit", appPod(withAnnotation("gatehouse.dev/sidecar-memory-request", "1Gi")), "sidecar memory request 1Gi exceeds its limit 256Mi"},
		{"upstream port not a number", appPod(withAnnotation("gatehouse.dev/upstream-port", "http"), func(p *corev1.Pod) { p.Spec.Containers[0].Ports = nil }), `annotation gatehouse.dev/upstream-port: "http" is not a port number (1-65535)`},
		{"upstream port out of range", appPod(withAnnotation("gatehouse.dev/upstream-port", "70000"), func(p *corev1.Pod) { p.Spec.Containers[0].Ports = nil }), `annotation gatehouse.dev/upstream-port: "70000" is not a port number (1-65535)`},
		{"upstream port is the sidecar's", appPod(withAnnotation("gatehouse.dev/upstream-port", "15080"), func(p *corev1.Pod) { p.Spec.Containers[0].Ports = nil }), "annotation gatehouse.dev/upstream-port: port 15080 is the sidecar's own port"},
		{"sidecar port invalid", appPod(withAnnotation("gatehouse.dev/sidecar-port", "0")), `annotation gatehouse.dev/sidecar-port: "0" is not a port number (1-65535)`},
		{"sidecar port reserved", appPod(withAnnotation("gatehouse.dev/sidecar-port", "9902")), "annotation gatehouse.dev/sidecar-port: port 9902 is reserved"},
		{"app already uses the sidecar port", appPod(func(p *corev1.Pod) { p.Spec.Containers[0].Ports[0].ContainerPort = 15080 }), `container "app" uses port 15080, which the sidecar needs`},
		{"unknown admin listen mode", appPod(withAnnotation("gatehouse.dev/sidecar-admin-listen", "tcp")), `annotation gatehouse.dev/sidecar-admin-listen: "tcp" is neither "unix" nor "loopback"`},
		{"unknown upstream protocol", appPod(withAnnotation("gatehouse.dev/upstream-protocol", "http2")), `annotation gatehouse.dev/upstream-protocol: "http2" is neither "h2c" nor "http1"`},
		{"sidecar port is the loopback admin port", appPod(withAnnotation("gatehouse.dev/sidecar-admin-listen", "loopback"), withAnnotation("gatehouse.dev/sidecar-port", "9901")), "annotation gatehouse.dev/sidecar-port: port 9901 is reserved"},
		{"path exception not a boolean", appPod(withAnnotation("gatehouse.dev/allow-encoded-slash", "yes please")), `annotation gatehouse.dev/allow-encoded-slash: invalid boolean value "yes please" for -allow-encoded-slash`},
		{"write timeout not a duration", appPod(withAnnotation("gatehouse.dev/write-timeout", "soon")), `annotation gatehouse.dev/write-timeout: invalid value "soon" for flag -write-timeout`},
		{"negative body read timeout", appPod(withAnnotation("gatehouse.dev/body-read-timeout", "-1s")), "annotation gatehouse.dev/body-read-timeout: must be positive"},
		{"trusted proxy not a CIDR", appPod(withAnnotation("gatehouse.dev/trusted-proxies", "10.0.0.0/8,10.0.0.0/33")), `annotation gatehouse.dev/trusted-proxies: invalid CIDR "10.0.0.0/33"`},
		{"drain delay not a number", appPod(withAnnotation("gatehouse.dev/drain-delay-seconds", "5s")), `annotation gatehouse.dev/drain-delay-seconds: "5s" is not a number of seconds`},
		{"negative drain delay", appPod(withAnnotation("gatehouse.dev/drain-delay-seconds", "-1")), `annotation gatehouse.dev/drain-delay-seconds: "-1" is not a number of seconds`},
		{"signed drain delay", appPod(withAnnotation("gatehouse.dev/drain-delay-seconds", "+5")), `annotation gatehouse.dev/drain-delay-seconds: "+5" is not a number of seconds`},
		{"drain delay with spaces", appPod(withAnnotation("gatehouse.dev/drain-delay-seconds", " 5 ")), `annotation gatehouse.dev/drain-delay-seconds: " 5 " is not a number of seconds`},
		{"app uses the status port", appPod(func(p *corev1.Pod) {
			p.Spec.Containers[0].Ports = append(p.Spec.Containers[0].Ports, corev1.ContainerPort{ContainerPort: 9902})
		}), `container "app" uses port 9902`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := injectSidecar(tt.pod, testParams())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestInjectionDecision(t *testing.T) {
	enabled := map[string]string{"gatehouse.dev/injection": "enabled"}
	disabled := map[string]string{"gatehouse.dev/injection": "disabled"}
	in := map[string]string{"gatehouse.dev/inject": "true"}
	out := map[string]string{"gatehouse.dev/inject": "false"}
	tests := []struct {
		name      string
		namespace string
		ns, pod   map[string]string
		want      bool
		reason    string
	}{
		{"labelled namespace", "apps", enabled, nil, true, ""},
		{"labelled namespace, pod opts out", "apps", enabled, out, false, "opted-out"},
		{"unlabelled namespace", "apps", nil, nil, false, "not-opted-in"},
		{"unlabelled namespace, pod opts in", "apps", nil, in, true, ""},
		{"unlabelled namespace, pod opts out", "apps", nil, out, false, "opted-out"},
		{"disabled namespace, pod opts in", "apps", disabled, in, false, "excluded-namespace"},
		{"other label value on namespace", "apps", map[string]string{"gatehouse.dev/injection": "yes"}, nil, false, "not-opted-in"},
		{"kube-system even when labelled", "kube-system", enabled, in, false, "excluded-namespace"},
		{"operator namespace even when labelled", "gatehouse-system", enabled, in, false, "excluded-namespace"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, reason := injectionDecision(tt.namespace, "gatehouse-system", tt.ns, tt.pod)
			if got != tt.want || reason != tt.reason {
				t.Errorf("injectionDecision = %v, %q; want %v, %q", got, reason, tt.want, tt.reason)
			}
		})
	}
}

func TestRedisPasswordOf(t *testing.T) {
	tests := []struct {
		name string
		rc   gatehousev1alpha1.RedisCluster
		want redisPassword
	}{
		{
			name: "generated secret",
			rc:   gatehousev1alpha1.RedisCluster{ObjectMeta: metav1.ObjectMeta{Name: "main-cache"}},
			want: redisPassword{Env: "GATEHOUSE_REDIS_PASSWORD_MAIN_CACHE", Secret: "main-cache-password", Key: "password"},
		},
		{
			name: "user secret reference with key",
			rc: gatehousev1alpha1.RedisCluster{ObjectMeta: metav1.ObjectMeta{Name: "main"},
				Spec: gatehousev1alpha1.RedisClusterSpec{PasswordSecretRef: &gatehousev1alpha1.SecretKeyReference{Name: "mine", Key: "pw"}}},
			want: redisPassword{Env: "GATEHOUSE_REDIS_PASSWORD_MAIN", Secret: "mine", Key: "pw"},
		},
		{
			name: "status agrees with the reference: keep its key",
			rc: gatehousev1alpha1.RedisCluster{ObjectMeta: metav1.ObjectMeta{Name: "main"},
				Spec:   gatehousev1alpha1.RedisClusterSpec{PasswordSecretRef: &gatehousev1alpha1.SecretKeyReference{Name: "mine", Key: "pw"}},
				Status: gatehousev1alpha1.RedisClusterStatus{PasswordSecret: "mine"}},
			want: redisPassword{Env: "GATEHOUSE_REDIS_PASSWORD_MAIN", Secret: "mine", Key: "pw"},
		},
		{
			name: "status names another secret",
			rc: gatehousev1alpha1.RedisCluster{ObjectMeta: metav1.ObjectMeta{Name: "main"},
				Status: gatehousev1alpha1.RedisClusterStatus{PasswordSecret: "main-password-v2"}},
			want: redisPassword{Env: "GATEHOUSE_REDIS_PASSWORD_MAIN", Secret: "main-password-v2", Key: "password"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, redisPasswordOf(&tt.rc)); diff != "" {
				t.Errorf("redisPasswordOf (-want +got):\n%s", diff)
			}
		})
	}
}

// upstreamProtocol's precedence, and what it must not be fooled by: a
// Service in another namespace, one that selects other pods, one without a
// selector, one routing another port, a UDP port.
func TestUpstreamProtocol(t *testing.T) {
	web := map[string]string{"app": "web"}
	httpPort := appPort{name: "http", number: 8080}
	tests := []struct {
		name     string
		ann      string
		app      appPort
		services []corev1.Service
		want     string
		wantErr  string
	}{
		{name: "plain http port", app: httpPort, want: ""},
		{name: "port named grpc", app: appPort{name: "grpc", number: 9090}, want: "h2c"},
		{name: "port named grpc-api", app: appPort{name: "grpc-api", number: 9090}, want: "h2c"},
		{name: "port named h2c", app: appPort{name: "h2c", number: 8080}, want: "h2c"},
		{name: "port named h2c-web", app: appPort{name: "h2c-web", number: 8080}, want: "h2c"},
		{name: "grpcweb is not the convention", app: appPort{name: "grpcweb", number: 8080}, want: ""},
		{name: "http2 is not the convention", app: appPort{name: "http2", number: 8080}, want: ""},
		{name: "unnamed port", app: appPort{number: 8080}, want: ""},
		{name: "annotation h2c", ann: "h2c", app: httpPort, want: "h2c"},
		{name: "annotation http1 beats the port name", ann: "http1", app: appPort{name: "grpc", number: 9090}, want: ""},
		{name: "annotation http1 beats a Service", ann: "http1", app: httpPort,
			services: []corev1.Service{service("ns", web, intstr.FromString("http"), "kubernetes.io/h2c")}, want: ""},
		{name: "unknown annotation", ann: "grpc", app: httpPort, wantErr: "gatehouse.dev/upstream-protocol"},
		{name: "appProtocol by target name", app: httpPort,
			services: []corev1.Service{service("ns", web, intstr.FromString("http"), "kubernetes.io/h2c")}, want: "h2c"},
		{name: "appProtocol grpc by target number", app: httpPort,
			services: []corev1.Service{service("ns", web, intstr.FromInt32(8080), "grpc")}, want: "h2c"},
		{name: "appProtocol is read case-insensitively", app: httpPort,
			services: []corev1.Service{service("ns", web, intstr.FromInt32(8080), "GRPC")}, want: "h2c"},
		{name: "appProtocol http beats the port name", app: appPort{name: "grpc", number: 9090},
			services: []corev1.Service{service("ns", web, intstr.FromString("grpc"), "http")}, want: ""},
		{name: "h2c beats http among Services", app: httpPort,
			services: []corev1.Service{
				service("ns", web, intstr.FromString("http"), "http"),
				service("ns", web, intstr.FromString("http"), "kubernetes.io/h2c"),
			}, want: "h2c"},
		{name: "another namespace's Service", app: httpPort,
			services: []corev1.Service{service("other", web, intstr.FromString("http"), "grpc")}, want: ""},
		{name: "a Service selecting other pods", app: httpPort,
			services: []corev1.Service{service("ns", map[string]string{"app": "api"}, intstr.FromString("http"), "grpc")}, want: ""},
		{name: "a Service selecting more labels than the pod has", app: httpPort,
			services: []corev1.Service{service("ns", map[string]string{"app": "web", "tier": "x"}, intstr.FromString("http"), "grpc")}, want: ""},
		{name: "a Service without a selector", app: httpPort,
			services: []corev1.Service{service("ns", nil, intstr.FromString("http"), "grpc")}, want: ""},
		{name: "a Service routing another port", app: httpPort,
			services: []corev1.Service{service("ns", web, intstr.FromString("metrics"), "grpc")}, want: ""},
		{name: "a UDP Service port", app: httpPort,
			services: []corev1.Service{func() corev1.Service {
				s := service("ns", web, intstr.FromInt32(8080), "grpc")
				s.Spec.Ports[0].Protocol = corev1.ProtocolUDP
				return s
			}()}, want: ""},
		{name: "an appProtocol it does not know changes nothing", app: appPort{name: "grpc", number: 9090},
			services: []corev1.Service{service("ns", web, intstr.FromString("grpc"), "example.com/custom")}, want: "h2c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := appPod()
			if tt.ann != "" {
				withAnnotation(AnnotationUpstreamProtocol, tt.ann)(pod)
			}
			got, err := upstreamProtocol(pod, tt.app, "http", 15080, tt.services)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one naming %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("upstreamProtocol = %q, want %q", got, tt.want)
			}
		})
	}
}
