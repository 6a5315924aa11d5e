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

	"github.com/gatehouse-dev/gatehouse/sidecar/contract"
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
	// AnnotationAdminListen chooses where the sidecar serves its admin API
	// to the app: AdminListenUnix (default), a socket in a volume shared with
	// every app container, or AdminListenLoopback, TCP on the pod's loopback.
	AnnotationAdminListen = "gatehouse.dev/sidecar-admin-listen"
)

// AnnotationAdminListen values.
const (
	// AdminListenUnix serves the admin API on contract.AdminSocket, a Unix
	// socket only the pod's containers can reach: nothing on the network,
	// not even a process on the pod's loopback, can mint sessions.
	AdminListenUnix = "unix"
	// AdminListenLoopback serves it on 127.0.0.1:9901, for apps that cannot
	// speak HTTP over a Unix socket.
	AdminListenLoopback = "loopback"
)

// Fixed parts of the injected sidecar. Its flags, paths and ports are the
// operator↔sidecar contract (sidecar/contract); these are the Kubernetes
// names around them.
const (
	// DefaultServicePortName is the app port name the sidecar takes over.
	DefaultServicePortName = "http"

	sidecarConfigVolume = "gatehouse-config"
	sidecarPodInfoVol   = "gatehouse-podinfo"
	// sidecarAdminVolume shares the admin socket between the sidecar and the
	// app containers.
	sidecarAdminVolume = "gatehouse-admin"
	sidecarStatusName  = "gh-status"
	// sidecarUpstreamPortName is the sidecar port's name when Services are
	// pointed at it by number (the annotation fallback).
	sidecarUpstreamPortName = "gatehouse"
	// nonRootUID is the distroless "nonroot" user.
	nonRootUID = 65532

	statusInjected = "injected"
)

// LabelPodInject values.
const (
	podOptIn  = "true"
	podOptOut = "false"
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
	// reasonHostNetwork: a pod on the node's network namespace would put the
	// sidecar's ports on the node, where they collide with every other such
	// pod and expose a loopback admin API to the whole node.
	reasonHostNetwork = "host-network"
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
	// Services are the Services of the pod's namespace, whose appProtocol
	// tells the app's protocol (upstreamProtocol).
	Services []corev1.Service
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
	case podOptOut:
		return false, reasonOptedOut
	case podOptIn:
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
	if pod.Spec.HostNetwork {
		return skip(pod, reasonHostNetwork, "gatehouse: pod not injected: it uses the node's network (hostNetwork: true), "+
			"where the sidecar's ports would collide with other pods' and its admin API would be open to the whole node"), nil
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
	adminListen := contract.UnixPrefix + contract.AdminSocket
	switch v := ann[AnnotationAdminListen]; v {
	case "", AdminListenUnix:
	case AdminListenLoopback:
		adminListen = contract.LoopbackAdmin
	default:
		return injectResult{}, fmt.Errorf("annotation %s: %q is neither %q nor %q", AnnotationAdminListen, v, AdminListenUnix, AdminListenLoopback)
	}
	reserved := []int32{contract.StatusPort}
	if adminListen == contract.LoopbackAdmin {
		reserved = append(reserved, contract.AdminPort)
	}
	sidecarPort := int32(contract.ProxyPort)
	if v, ok := ann[AnnotationSidecarPort]; ok {
		if sidecarPort, err = parsePort(AnnotationSidecarPort, v); err != nil {
			return injectResult{}, err
		}
	}
	if slices.Contains(reserved, sidecarPort) {
		return injectResult{}, fmt.Errorf("annotation %s: port %d is reserved for the sidecar's status and admin listeners", AnnotationSidecarPort, sidecarPort)
	}
	logLevel := p.LogLevel
	if v := ann[AnnotationLogLevel]; v != "" {
		logLevel = v
	}

	out := pod.DeepCopy()
	if owner, port, ok := appPortUser(out, append(reserved, sidecarPort)); ok {
		return injectResult{}, fmt.Errorf("container %q uses port %d, which the sidecar needs (its proxy port moves with annotation %s; %s fixed)",
			owner, port, AnnotationSidecarPort, fixedPorts(reserved))
	}

	// Wire the request path: take over the named port Services target, or
	// fall back to the annotated upstream port.
	portNames := []string{DefaultServicePortName, GRPCServicePortName}
	if v := ann[AnnotationServicePortName]; v != "" {
		portNames = []string{v}
	}
	var app appPort
	sidecarPortName := sidecarUpstreamPortName
	if portName, c, i, ok := findNamedPort(out, portNames); ok {
		app = appPort{name: portName, number: out.Spec.Containers[c].Ports[i].ContainerPort}
		renamed := renamedPort(portName)
		out.Spec.Containers[c].Ports[i].Name = renamed
		// The kubelet resolves a named probe or hook port among the
		// container's own ports: left alone, `port: http` would name no
		// port of the app any more and every probe would fail.
		renameHandlerPorts(&out.Spec.Containers[c], portName, renamed)
		sidecarPortName = portName
	} else if v, ok := ann[AnnotationUpstreamPort]; ok {
		upstream, err := parsePort(AnnotationUpstreamPort, v)
		if err != nil {
			return injectResult{}, err
		}
		if upstream == sidecarPort {
			return injectResult{}, fmt.Errorf("annotation %s: port %d is the sidecar's own port", AnnotationUpstreamPort, upstream)
		}
		app = declaredPort(pod, upstream)
	} else {
		return skip(pod, reasonNoUpstream, fmt.Sprintf("gatehouse: pod not injected: no container port named %s and no %s annotation; "+
			"name the port Services target %q (or set %s), or set %s and point the Service at port %d",
			quotedOr(portNames), AnnotationUpstreamPort, portNames[0], AnnotationServicePortName, AnnotationUpstreamPort, sidecarPort)), nil
	}
	protocol, err := upstreamProtocol(pod, app, sidecarPortName, sidecarPort, p.Services)
	if err != nil {
		return injectResult{}, err
	}

	flags := contract.Flags{
		Config:           contract.ConfigFile,
		PodLabels:        contract.LabelsFile,
		Listen:           fmt.Sprintf(":%d", sidecarPort),
		Upstream:         fmt.Sprintf("http://127.0.0.1:%d", app.number),
		UpstreamProtocol: protocol,
		AdminListen:      adminListen,
		StatusListen:     fmt.Sprintf(":%d", contract.StatusPort),
		LogLevel:         logLevel,
	}
	if err := annotatedFlags(ann, &flags); err != nil {
		return injectResult{}, err
	}
	sidecar := sidecarContainer(image, flags, sidecarPort, sidecarPortName, resources, p.Passwords)
	sidecar.Lifecycle = sidecarLifecycle(adminListen)
	warnings, err := addDrainDelay(out)
	if err != nil {
		return injectResult{}, err
	}
	volumes := sidecarVolumes()
	if adminListen != contract.LoopbackAdmin {
		// The socket lives in a volume of its own that every app container
		// mounts at the same path, so an app finds it without being told.
		admin := corev1.VolumeMount{Name: sidecarAdminVolume, MountPath: contract.AdminDir}
		sidecar.VolumeMounts = append(sidecar.VolumeMounts, admin)
		for i := range out.Spec.Containers {
			out.Spec.Containers[i].VolumeMounts = append(out.Spec.Containers[i].VolumeMounts, admin)
		}
		volumes = append(volumes, corev1.Volume{Name: sidecarAdminVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
	}
	out.Spec.InitContainers = append([]corev1.Container{sidecar}, out.Spec.InitContainers...)
	out.Spec.Volumes = append(out.Spec.Volumes, volumes...)

	if out.Annotations == nil {
		out.Annotations = map[string]string{}
	}
	out.Annotations[AnnotationSidecarVersion] = image
	if p.ConfigHash != "" {
		out.Annotations[AnnotationConfigHash] = p.ConfigHash
	}
	out.Annotations[AnnotationInjectionStatus] = statusInjected
	return injectResult{Pod: out, Injected: true, Reason: reasonInjected, Warnings: warnings}, nil
}

// skip admits pod uninjected, saying why in its injection-status annotation
// and in an admission warning.
func skip(pod *corev1.Pod, reason, warning string) injectResult {
	skipped := pod.DeepCopy()
	if skipped.Annotations == nil {
		skipped.Annotations = map[string]string{}
	}
	skipped.Annotations[AnnotationInjectionStatus] = "skipped: " + reason
	return injectResult{Pod: skipped, Reason: reason, Warnings: []string{warning}}
}

// renameHandlerPorts points every probe and lifecycle hook of c that names
// port from at to instead. Numeric ports need nothing: the app keeps its
// port number. gRPC probes only take numbers.
func renameHandlerPorts(c *corev1.Container, from, to string) {
	port := func(p *intstr.IntOrString) {
		if p.Type == intstr.String && p.StrVal == from {
			*p = intstr.FromString(to)
		}
	}
	rename := func(http *corev1.HTTPGetAction, tcp *corev1.TCPSocketAction) {
		if http != nil {
			port(&http.Port)
		}
		if tcp != nil {
			port(&tcp.Port)
		}
	}
	for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
		if p != nil {
			rename(p.HTTPGet, p.TCPSocket)
		}
	}
	if c.Lifecycle != nil {
		for _, h := range []*corev1.LifecycleHandler{c.Lifecycle.PostStart, c.Lifecycle.PreStop} {
			if h != nil {
				rename(h.HTTPGet, h.TCPSocket)
			}
		}
	}
}

func fixedPorts(ports []int32) string {
	s := make([]string, 0, len(ports))
	for _, p := range ports {
		s = append(s, strconv.Itoa(int(p)))
	}
	if len(s) == 1 {
		return s[0] + " is"
	}
	return strings.Join(s, " and ") + " are"
}

// isInjected reports whether the sidecar is already present, in either
// list, so re-admission (a re-applied manifest, a copied pod spec) never
// adds a second one.
func isInjected(pod *corev1.Pod) bool {
	has := func(c corev1.Container) bool { return c.Name == SidecarContainerName }
	return slices.ContainsFunc(pod.Spec.InitContainers, has) || slices.ContainsFunc(pod.Spec.Containers, has)
}

func sidecarContainer(image string, flags contract.Flags, port int32, portName string, res corev1.ResourceRequirements, passwords []redisPassword) corev1.Container {
	env := make([]corev1.EnvVar, 0, len(passwords))
	for _, pw := range passwords {
		env = append(env, corev1.EnvVar{
			Name: pw.Env,
			ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: pw.Secret},
				Key:                  pw.Key,
				// A cluster whose Secret is not there yet must not keep
				// the pod from starting; the sidecar reports Redis as
				// unreachable on /readyz instead.
				Optional: new(true),
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
		Args:          flags.Args(),
		RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways),
		Ports: []corev1.ContainerPort{
			{Name: portName, ContainerPort: port, Protocol: corev1.ProtocolTCP},
			{Name: sidecarStatusName, ContainerPort: contract.StatusPort, Protocol: corev1.ProtocolTCP},
		},
		Env:       env,
		Resources: res,
		VolumeMounts: []corev1.VolumeMount{
			{Name: sidecarConfigVolume, MountPath: contract.ConfigDir, ReadOnly: true},
			{Name: sidecarPodInfoVol, MountPath: contract.PodInfoDir, ReadOnly: true},
		},
		// The app starts only once the sidecar is ready (native sidecar
		// semantics), so a startup probe bounds that wait at ~60s.
		StartupProbe:   probe("/readyz", 12),
		ReadinessProbe: probe("/readyz", 3),
		LivenessProbe:  probe("/healthz", 3),
		SecurityContext: &corev1.SecurityContext{
			RunAsNonRoot:             new(true),
			RunAsUser:                ptr.To[int64](nonRootUID),
			RunAsGroup:               ptr.To[int64](nonRootUID),
			ReadOnlyRootFilesystem:   new(true),
			AllowPrivilegeEscalation: new(false),
			Privileged:               new(false),
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
			Items:                []corev1.KeyToPath{{Key: SidecarConfigKey, Path: contract.ConfigFileName}},
			// A pod can be admitted before the operator has rendered its
			// namespace (it renders one document for every namespace with
			// injected pods). Optional lets the pod start meanwhile; the
			// sidecar stays unready and answers 503 until the file appears.
			Optional: new(true),
		}}},
		{Name: sidecarPodInfoVol, VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{
			Items: []corev1.DownwardAPIVolumeFile{{Path: contract.LabelsFileName, FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}}},
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

// findNamedPort finds the app container port that Services target by
// name: the first of names that a TCP port of the pod has.
func findNamedPort(pod *corev1.Pod, names []string) (name string, container, port int, ok bool) {
	for _, name := range names {
		for c, ctr := range pod.Spec.Containers {
			for i, p := range ctr.Ports {
				if p.Name == name && (p.Protocol == "" || p.Protocol == corev1.ProtocolTCP) {
					return name, c, i, true
				}
			}
		}
	}
	return "", 0, 0, false
}

// quotedOr writes names as `"a" or "b"`.
func quotedOr(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = strconv.Quote(n)
	}
	return strings.Join(q, " or ")
}

// appPortUser finds a container already listening on one of ports: pods
// share one network namespace, so the sidecar could not bind it.
func appPortUser(pod *corev1.Pod, ports []int32) (string, int32, bool) {
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range list {
			for _, p := range c.Ports {
				if slices.Contains(ports, p.ContainerPort) {
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
