package controllers

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// Pod annotations read or written by the injection webhook. The label and
// annotation names shared with the renderer live in names.go.
const (
	// AnnotationSidecarImage overrides the injected image for one pod.
	AnnotationSidecarImage = "gatehouse.dev/sidecar-image"
	// AnnotationServicePortName names the app's container port that Services
	// target; the sidecar takes over that name (default "http").
	AnnotationServicePortName = "gatehouse.dev/service-port-name"
	// AnnotationUpstreamPort is the app's port on loopback when no named port
	// is wired; Services must then target the sidecar's port.
	AnnotationUpstreamPort = "gatehouse.dev/upstream-port"
	// AnnotationSidecarPort moves the sidecar's listener off the default port
	// when the app already uses it.
	AnnotationSidecarPort = "gatehouse.dev/sidecar-port"
	// AnnotationLogLevel sets the sidecar's --log-level.
	AnnotationLogLevel = "gatehouse.dev/sidecar-log-level"
	// AnnotationCPURequest, AnnotationCPULimit, AnnotationMemoryRequest and
	// AnnotationMemoryLimit override the sidecar's resources; "0" removes
	// the default.
	AnnotationCPURequest    = "gatehouse.dev/sidecar-cpu-request"
	AnnotationCPULimit      = "gatehouse.dev/sidecar-cpu-limit"
	AnnotationMemoryRequest = "gatehouse.dev/sidecar-memory-request"
	AnnotationMemoryLimit   = "gatehouse.dev/sidecar-memory-limit"
	// AnnotationInjectionStatus records what the webhook did, so a pod that
	// was opted in but not injected says why long after the warning is gone.
	AnnotationInjectionStatus = "gatehouse.dev/injection-status"
)

// Fixed parts of the injected sidecar. The ports are part of the documented
// behaviour (docs/injection.md): Services target SidecarPort when no named
// port is rewired.
const (
	// DefaultSidecarPort is the sidecar's proxy listener. 15080 sits next to
	// the ports service meshes reserve, far from common app ports.
	DefaultSidecarPort = 15080
	// SidecarAdminAddr is the admin API: loopback only, for the app.
	SidecarAdminAddr = "127.0.0.1:9901"
	sidecarAdminPort = 9901
	// SidecarStatusPort serves /healthz, /readyz and /metrics for kubelet
	// probes and Prometheus.
	SidecarStatusPort = 9902
	// DefaultServicePortName is the app port name the sidecar takes over.
	DefaultServicePortName = "http"

	sidecarConfigVolume = "gatehouse-config"
	sidecarConfigDir    = "/etc/gatehouse/config"
	sidecarPodInfoVol   = "gatehouse-podinfo"
	sidecarPodInfoDir   = "/etc/gatehouse/podinfo"
	sidecarStatusName   = "gh-status"
	// sidecarUpstreamPortName is the sidecar port's name when Services are
	// pointed at it by number (the annotation fallback).
	sidecarUpstreamPortName = "gatehouse"
	// nonRootUID is the distroless "nonroot" user.
	nonRootUID = 65532

	statusInjected = "injected"
)

// Skip reasons, used as the metrics label and in the injection-status
// annotation.
const (
	reasonInjected        = "injected"
	reasonAlreadyInjected = "already-injected"
	reasonNoUpstream      = "no-upstream-port"
	reasonOptedOut        = "opted-out"
	reasonNotOptedIn      = "not-opted-in"
	reasonExcludedNS      = "excluded-namespace"
	reasonInvalid         = "invalid-annotation"
)

// redisPassword is one RedisCluster's password, as the sidecar reads it.
type redisPassword struct {
	Env, Secret, Key string
}

// injectParams is everything besides the pod that decides the injected
// sidecar. The webhook fills it from flags and the manager's cache; tests
// build it by hand.
type injectParams struct {
	Image      string
	ConfigHash string
	LogLevel   string
	Resources  corev1.ResourceRequirements
	Passwords  []redisPassword
}

// injectResult is the outcome of injectSidecar. Pod is a modified copy (or
// the input itself when nothing changed).
type injectResult struct {
	Pod      *corev1.Pod
	Injected bool
	Reason   string
	Warnings []string
}

// injectionDecision says whether a pod is in scope, mirroring the
// webhook configuration's selectors so the decision holds even where those
// selectors are missing (a hand-edited configuration, an older API server).
func injectionDecision(namespace, operatorNamespace string, nsLabels, podLabels map[string]string) (bool, string) {
	if namespace == "kube-system" || (operatorNamespace != "" && namespace == operatorNamespace) {
		return false, reasonExcludedNS
	}
	switch podLabels[LabelPodInject] {
	case "false":
		return false, reasonOptedOut
	case "true":
		if nsLabels[LabelNamespaceInjection] == "disabled" {
			return false, reasonExcludedNS
		}
		return true, ""
	}
	if nsLabels[LabelNamespaceInjection] == "enabled" {
		return true, ""
	}
	return false, reasonNotOptedIn
}

// injectSidecar adds the Gatehouse sidecar to pod as a native sidecar (the
// first init container, restartPolicy Always) and wires it into the request
// path. It is pure: the input pod is never modified. An error means the pod's
// annotations are invalid and the pod must be denied; a pod that cannot be
// wired is returned with a warning instead.
func injectSidecar(pod *corev1.Pod, p injectParams) (injectResult, error) {
	if isInjected(pod) {
		return injectResult{Pod: pod, Reason: reasonAlreadyInjected}, nil
	}
	ann := pod.Annotations

	image := p.Image
	if v := ann[AnnotationSidecarImage]; v != "" {
		image = v
	}
	resources, err := sidecarResources(p.Resources, ann)
	if err != nil {
		return injectResult{}, err
	}
	sidecarPort := int32(DefaultSidecarPort)
	if v, ok := ann[AnnotationSidecarPort]; ok {
		if sidecarPort, err = parsePort(AnnotationSidecarPort, v); err != nil {
			return injectResult{}, err
		}
	}
	if sidecarPort == SidecarStatusPort || sidecarPort == sidecarAdminPort {
		return injectResult{}, fmt.Errorf("annotation %s: port %d is reserved for the sidecar's status and admin listeners", AnnotationSidecarPort, sidecarPort)
	}
	logLevel := p.LogLevel
	if v := ann[AnnotationLogLevel]; v != "" {
		logLevel = v
	}

	out := pod.DeepCopy()
	if owner, port, ok := appPortUser(out, sidecarPort); ok {
		return injectResult{}, fmt.Errorf("container %q uses port %d, which the sidecar needs (its proxy port moves with annotation %s; %d and %d are fixed)", owner, port, AnnotationSidecarPort, sidecarAdminPort, SidecarStatusPort)
	}

	// Wire the request path: take over the named port Services target, or
	// fall back to the annotated upstream port.
	portName := DefaultServicePortName
	if v := ann[AnnotationServicePortName]; v != "" {
		portName = v
	}
	var upstream int32
	sidecarPortName := sidecarUpstreamPortName
	if c, i, ok := findNamedPort(out, portName); ok {
		upstream = out.Spec.Containers[c].Ports[i].ContainerPort
		out.Spec.Containers[c].Ports[i].Name = renamedPort(portName)
		sidecarPortName = portName
	} else if v, ok := ann[AnnotationUpstreamPort]; ok {
		if upstream, err = parsePort(AnnotationUpstreamPort, v); err != nil {
			return injectResult{}, err
		}
		if upstream == sidecarPort {
			return injectResult{}, fmt.Errorf("annotation %s: port %d is the sidecar's own port", AnnotationUpstreamPort, upstream)
		}
	} else {
		msg := fmt.Sprintf("gatehouse: pod not injected: no container port named %q and no %s annotation; name the port Services target %q (or set %s), or set %s and point the Service at port %d",
			portName, AnnotationUpstreamPort, portName, AnnotationServicePortName, AnnotationUpstreamPort, sidecarPort)
		skipped := pod.DeepCopy()
		if skipped.Annotations == nil {
			skipped.Annotations = map[string]string{}
		}
		skipped.Annotations[AnnotationInjectionStatus] = "skipped: " + reasonNoUpstream
		return injectResult{Pod: skipped, Reason: reasonNoUpstream, Warnings: []string{msg}}, nil
	}

	sidecar := sidecarContainer(image, logLevel, sidecarPort, sidecarPortName, upstream, resources, p.Passwords)
	out.Spec.InitContainers = append([]corev1.Container{sidecar}, out.Spec.InitContainers...)
	out.Spec.Volumes = append(out.Spec.Volumes, sidecarVolumes()...)

	if out.Annotations == nil {
		out.Annotations = map[string]string{}
	}
	out.Annotations[AnnotationSidecarVersion] = image
	if p.ConfigHash != "" {
		out.Annotations[AnnotationConfigHash] = p.ConfigHash
	}
	out.Annotations[AnnotationInjectionStatus] = statusInjected
	return injectResult{Pod: out, Injected: true, Reason: reasonInjected}, nil
}

// isInjected reports whether the sidecar is already present, in either
// list, so re-admission (a re-applied manifest, a copied pod spec) never
// adds a second one.
func isInjected(pod *corev1.Pod) bool {
	has := func(c corev1.Container) bool { return c.Name == SidecarContainerName }
	return slices.ContainsFunc(pod.Spec.InitContainers, has) || slices.ContainsFunc(pod.Spec.Containers, has)
}

func sidecarContainer(image, logLevel string, port int32, portName string, upstream int32, res corev1.ResourceRequirements, passwords []redisPassword) corev1.Container {
	args := []string{
		"--config=" + sidecarConfigDir + "/" + SidecarConfigKey,
		"--pod-labels=" + sidecarPodInfoDir + "/labels",
		fmt.Sprintf("--listen=:%d", port),
		fmt.Sprintf("--upstream=http://127.0.0.1:%d", upstream),
		"--admin-listen=" + SidecarAdminAddr,
		fmt.Sprintf("--status-listen=:%d", SidecarStatusPort),
	}
	if logLevel != "" {
		args = append(args, "--log-level="+logLevel)
	}
	var env []corev1.EnvVar
	for _, pw := range passwords {
		env = append(env, corev1.EnvVar{
			Name: pw.Env,
			ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: pw.Secret},
				Key:                  pw.Key,
				// A cluster whose Secret is not there yet must not keep
				// the pod from starting; the sidecar reports Redis as
				// unreachable on /readyz instead.
				Optional: ptr.To(true),
			}},
		})
	}
	probe := func(path string, failures int32) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path: path, Port: intstr.FromString(sidecarStatusName),
			}},
			PeriodSeconds:    5,
			TimeoutSeconds:   2,
			FailureThreshold: failures,
		}
	}
	return corev1.Container{
		Name:          SidecarContainerName,
		Image:         image,
		Args:          args,
		RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways),
		Ports: []corev1.ContainerPort{
			{Name: portName, ContainerPort: port, Protocol: corev1.ProtocolTCP},
			{Name: sidecarStatusName, ContainerPort: SidecarStatusPort, Protocol: corev1.ProtocolTCP},
		},
		Env:       env,
		Resources: res,
		VolumeMounts: []corev1.VolumeMount{
			{Name: sidecarConfigVolume, MountPath: sidecarConfigDir, ReadOnly: true},
			{Name: sidecarPodInfoVol, MountPath: sidecarPodInfoDir, ReadOnly: true},
		},
		// The app starts only once the sidecar is ready (native sidecar
		// semantics), so a startup probe bounds that wait at ~60s.
		StartupProbe:   probe("/readyz", 12),
		ReadinessProbe: probe("/readyz", 3),
		LivenessProbe:  probe("/healthz", 3),
		SecurityContext: &corev1.SecurityContext{
			RunAsNonRoot:             ptr.To(true),
			RunAsUser:                ptr.To[int64](nonRootUID),
			RunAsGroup:               ptr.To[int64](nonRootUID),
			ReadOnlyRootFilesystem:   ptr.To(true),
			AllowPrivilegeEscalation: ptr.To(false),
			Privileged:               ptr.To(false),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
}

func sidecarVolumes() []corev1.Volume {
	return []corev1.Volume{
		{Name: sidecarConfigVolume, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: SidecarConfigMapName},
			Items:                []corev1.KeyToPath{{Key: SidecarConfigKey, Path: SidecarConfigKey}},
			// Pods start before any policy exists; the sidecar treats a
			// missing file as "no policies" and picks it up when it appears.
			Optional: ptr.To(true),
		}}},
		{Name: sidecarPodInfoVol, VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{
			Items: []corev1.DownwardAPIVolumeFile{{Path: "labels", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}}},
		}}},
	}
}

// sidecarResources applies the per-pod annotation overrides to the defaults.
// "0" removes a default (e.g. no CPU limit).
func sidecarResources(defaults corev1.ResourceRequirements, ann map[string]string) (corev1.ResourceRequirements, error) {
	res := *defaults.DeepCopy()
	for _, o := range []struct {
		annotation string
		list       *corev1.ResourceList
		name       corev1.ResourceName
	}{
		{AnnotationCPURequest, &res.Requests, corev1.ResourceCPU},
		{AnnotationCPULimit, &res.Limits, corev1.ResourceCPU},
		{AnnotationMemoryRequest, &res.Requests, corev1.ResourceMemory},
		{AnnotationMemoryLimit, &res.Limits, corev1.ResourceMemory},
	} {
		v, ok := ann[o.annotation]
		if !ok {
			continue
		}
		q, err := resource.ParseQuantity(strings.TrimSpace(v))
		if err != nil {
			return corev1.ResourceRequirements{}, fmt.Errorf("annotation %s: invalid quantity %q: %w", o.annotation, v, err)
		}
		if q.Sign() < 0 {
			return corev1.ResourceRequirements{}, fmt.Errorf("annotation %s: negative quantity %q", o.annotation, v)
		}
		if q.IsZero() {
			delete(*o.list, o.name)
			continue
		}
		if *o.list == nil {
			*o.list = corev1.ResourceList{}
		}
		(*o.list)[o.name] = q
	}
	for name, req := range res.Requests {
		if lim, ok := res.Limits[name]; ok && req.Cmp(lim) > 0 {
			return corev1.ResourceRequirements{}, fmt.Errorf("sidecar %s request %s exceeds its limit %s", name, req.String(), lim.String())
		}
	}
	if len(res.Requests) == 0 {
		res.Requests = nil
	}
	if len(res.Limits) == 0 {
		res.Limits = nil
	}
	return res, nil
}

func parsePort(annotation, v string) (int32, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 32)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("annotation %s: %q is not a port number (1-65535)", annotation, v)
	}
	return int32(n), nil
}

// findNamedPort finds the app container port that Services target by name.
func findNamedPort(pod *corev1.Pod, name string) (container, port int, ok bool) {
	for c, ctr := range pod.Spec.Containers {
		for i, p := range ctr.Ports {
			if p.Name == name && (p.Protocol == "" || p.Protocol == corev1.ProtocolTCP) {
				return c, i, true
			}
		}
	}
	return 0, 0, false
}

// appPortUser finds a container already listening on port: pods share one
// network namespace, so the sidecar could not bind it.
func appPortUser(pod *corev1.Pod, port int32) (string, int32, bool) {
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range list {
			for _, p := range c.Ports {
				if p.ContainerPort == port || p.ContainerPort == SidecarStatusPort || p.ContainerPort == sidecarAdminPort {
					return c.Name, p.ContainerPort, true
				}
			}
		}
	}
	return "", 0, false
}

// renamedPort is the app port's new name. Port names are IANA service names:
// at most 15 characters, so a long name is shortened.
func renamedPort(name string) string {
	n := "app-" + name
	if len(n) > 15 {
		n = strings.TrimRight(n[:15], "-")
	}
	return n
}
