package controllers

import (
	"fmt"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	policyv1ac "k8s.io/client-go/applyconfigurations/policy/v1"

	"github.com/gatehouse-dev/gatehouse/api/v1alpha1"
	"github.com/gatehouse-dev/gatehouse/internal/redisconf"
	"github.com/gatehouse-dev/gatehouse/internal/redisnames"
)

// Names and labels of the objects a RedisCluster owns. The pod labels are
// the StatefulSet's selector, which is immutable: changing them orphans
// running clusters.
const (
	// AnnotationRedisRestartHash on the pod template hashes the redis.conf
	// directives that need a restart; it changes, and pods roll, only for
	// those (live settings are applied with CONFIG SET instead).
	AnnotationRedisRestartHash = "gatehouse.dev/redis-restart-hash"

	labelName      = "app.kubernetes.io/name"
	labelInstance  = "app.kubernetes.io/instance"
	redisLabelName = "gatehouse-redis"

	redisContainer  = "redis"
	redisConfigDir  = "/etc/redis"
	redisAuthDir    = "/etc/redis/auth"
	redisDataVolume = "data"
	redisConfVolume = "config"
	redisAuthVolume = "auth"
	envPodName      = "POD_NAME"
	// envCLIAuth is read by redis-cli, so probes authenticate without the
	// password on their command line.
	envCLIAuth = "REDISCLI_AUTH"
)

// LabelRedisPassword marks the Secrets the operator reads: the manager's
// Secret informer holds only Secrets with this label, so it never caches
// (or needs RBAC to watch) the cluster's other Secrets. The generated
// password Secret and the auth Secret carry it; a Secret given in
// spec.passwordSecretRef must be labelled too (docs/redis-cluster.md).
const (
	LabelRedisPassword = "gatehouse.dev/redis-password"
	// LabelRedisPasswordValue is LabelRedisPassword's value.
	LabelRedisPasswordValue = "true"
)

// redisLabels select the pods of one cluster.
func redisLabels(cluster string) map[string]string {
	return map[string]string{labelName: redisLabelName, labelInstance: cluster}
}

// objectLabels are put on every owned object.
func objectLabels(cluster string) map[string]string {
	l := redisLabels(cluster)
	l[LabelManagedBy] = ManagedByValue
	return l
}

// redisSpec maps the API object onto the cluster operations' spec, with the
// CRD defaults for objects created before defaulting ran.
func redisSpec(rc *v1alpha1.RedisCluster) (shards, replicas int32) {
	shards = max(rc.Spec.Shards, 3)
	replicas = 1
	if rc.Spec.ReplicasPerShard != nil {
		replicas = *rc.Spec.ReplicasPerShard
	}
	return shards, replicas
}

// redisConfParams maps the API object onto redis.conf parameters.
func redisConfParams(rc *v1alpha1.RedisCluster) redisconf.Params {
	profile := redisconf.Durable
	if rc.Spec.Profile == v1alpha1.ProfileCache {
		profile = redisconf.Cache
	}
	return redisconf.Params{
		Profile:   profile,
		Port:      redisnames.Port,
		BusPort:   redisnames.BusPort,
		Overrides: rc.Spec.Config,
	}
}

// redisConfig is the rendered configuration of a cluster.
type redisConfig struct {
	Directives []redisconf.Directive
	Text       string
	// Hash covers the whole file; RestartHash only restart-needing settings.
	Hash, RestartHash string
}

// renderRedisConfig renders rc's redis.conf; an error means spec.config
// holds invalid overrides, and its message names every one of them.
func renderRedisConfig(rc *v1alpha1.RedisCluster) (redisConfig, error) {
	ds, err := redisconf.Build(redisConfParams(rc))
	if err != nil {
		return redisConfig{}, err
	}
	text := redisconf.Format(ds)
	return redisConfig{Directives: ds, Text: text, Hash: redisconf.Hash(text), RestartHash: redisconf.RestartHash(ds)}, nil
}

// liveChanges lists every live-changeable directive of ds with its value,
// so one CONFIG SET brings a running node to ds whatever it ran before.
func liveChanges(ds []redisconf.Directive) []redisconf.Change {
	var out []redisconf.Change
	for _, d := range ds {
		if redisconf.Live(d.Name) {
			out = append(out, redisconf.Change{Name: d.Name, New: d.Value})
		}
	}
	return out
}

// ownerRef makes rc the controller of an owned object, so deleting rc
// deletes it and its changes reach the reconciler.
func ownerRef(rc *v1alpha1.RedisCluster) *metav1ac.OwnerReferenceApplyConfiguration {
	return metav1ac.OwnerReference().
		WithAPIVersion(v1alpha1.GroupVersion.String()).
		WithKind("RedisCluster").
		WithName(rc.Name).
		WithUID(rc.UID).
		WithController(true).
		WithBlockOwnerDeletion(true)
}

func redisConfigMap(rc *v1alpha1.RedisCluster, conf redisConfig) *corev1ac.ConfigMapApplyConfiguration {
	return corev1ac.ConfigMap(redisnames.ConfigMap(rc.Name), rc.Namespace).
		WithLabels(objectLabels(rc.Name)).
		WithAnnotations(map[string]string{AnnotationConfigHash: conf.Hash}).
		WithOwnerReferences(ownerRef(rc)).
		WithData(map[string]string{redisnames.ConfigKey: conf.Text})
}

// redisHeadlessService publishes not-ready pods too: nodes must resolve each
// other's announced names while the cluster forms, before any is ready.
func redisHeadlessService(rc *v1alpha1.RedisCluster) *corev1ac.ServiceApplyConfiguration {
	return corev1ac.Service(redisnames.HeadlessService(rc.Name), rc.Namespace).
		WithLabels(objectLabels(rc.Name)).
		WithOwnerReferences(ownerRef(rc)).
		WithSpec(corev1ac.ServiceSpec().
			WithClusterIP(corev1.ClusterIPNone).
			WithPublishNotReadyAddresses(true).
			WithSelector(redisLabels(rc.Name)).
			WithPorts(
				corev1ac.ServicePort().WithName("redis").WithPort(redisnames.Port).WithTargetPort(intstr.FromString("redis")),
				corev1ac.ServicePort().WithName("bus").WithPort(redisnames.BusPort).WithTargetPort(intstr.FromString("bus")),
			))
}

// redisClientService is the seed address sidecars connect to; go-redis then
// discovers every node from CLUSTER SLOTS.
func redisClientService(rc *v1alpha1.RedisCluster) *corev1ac.ServiceApplyConfiguration {
	return corev1ac.Service(redisnames.ClientService(rc.Name), rc.Namespace).
		WithLabels(objectLabels(rc.Name)).
		WithOwnerReferences(ownerRef(rc)).
		WithSpec(corev1ac.ServiceSpec().
			WithType(corev1.ServiceTypeClusterIP).
			WithSelector(redisLabels(rc.Name)).
			WithPorts(corev1ac.ServicePort().WithName("redis").WithPort(redisnames.Port).WithTargetPort(intstr.FromString("redis"))))
}

// redisPDB lets voluntary disruptions (drains) take one node at a time, so a
// shard never loses its primary and its replica together.
func redisPDB(rc *v1alpha1.RedisCluster) *policyv1ac.PodDisruptionBudgetApplyConfiguration {
	return policyv1ac.PodDisruptionBudget(rc.Name, rc.Namespace).
		WithLabels(objectLabels(rc.Name)).
		WithOwnerReferences(ownerRef(rc)).
		WithSpec(policyv1ac.PodDisruptionBudgetSpec().
			WithMaxUnavailable(intstr.FromInt32(1)).
			WithSelector(metav1ac.LabelSelector().WithMatchLabels(redisLabels(rc.Name))))
}

// redisPasswordSecret is the generated password Secret. It is created once
// (never applied again), so the password is never rotated behind the
// sidecars' back.
func redisPasswordSecret(rc *v1alpha1.RedisCluster, password string) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:      redisnames.PasswordSecret(rc.Name),
			Namespace: rc.Namespace,
			Labels:    secretLabels(rc.Name),
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: v1alpha1.GroupVersion.String(), Kind: "RedisCluster", Name: rc.Name, UID: rc.UID,
				Controller: new(true), BlockOwnerDeletion: new(true),
			}},
		},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{redisnames.PasswordKey: []byte(password)},
	}
}

// secretLabels label the Secrets the operator writes, so its Secret
// informer sees them.
func secretLabels(cluster string) map[string]string {
	l := objectLabels(cluster)
	l[LabelRedisPassword] = LabelRedisPasswordValue
	return l
}

// redisAuthSecret holds the nodes' password directives as a redis.conf
// snippet, which redis-server reads with --include: the password reaches it
// through a file, never its command line.
func redisAuthSecret(rc *v1alpha1.RedisCluster, password string) *corev1ac.SecretApplyConfiguration {
	return corev1ac.Secret(redisnames.AuthSecret(rc.Name), rc.Namespace).
		WithLabels(secretLabels(rc.Name)).
		WithOwnerReferences(ownerRef(rc)).
		WithType(corev1.SecretTypeOpaque).
		WithData(map[string][]byte{redisnames.AuthConfKey: []byte(redisconf.AuthConf(password))})
}

// passwordRef is where a cluster's password lives.
type passwordRef struct{ Secret, Key string }

// redisPasswordRef is the user's Secret when given, else the generated one.
func redisPasswordRef(rc *v1alpha1.RedisCluster) passwordRef {
	if ref := rc.Spec.PasswordSecretRef; ref != nil {
		key := ref.Key
		if key == "" {
			key = redisnames.PasswordKey
		}
		return passwordRef{Secret: ref.Name, Key: key}
	}
	return passwordRef{Secret: redisnames.PasswordSecret(rc.Name), Key: redisnames.PasswordKey}
}

// redisStatefulSet renders the nodes. replicas is passed in rather than
// derived from the spec: during a scale-in the StatefulSet keeps its leaving
// pods until their slots have moved away.
func redisStatefulSet(rc *v1alpha1.RedisCluster, conf redisConfig, pw passwordRef, replicas int32) *appsv1ac.StatefulSetApplyConfiguration {
	headless := redisnames.HeadlessService(rc.Name)
	image := rc.Spec.Image
	if image == "" {
		image = "redis:7.2.5"
	}
	secretEnv := func(name string) *corev1ac.EnvVarApplyConfiguration {
		return corev1ac.EnvVar().WithName(name).WithValueFrom(corev1ac.EnvVarSource().
			WithSecretKeyRef(corev1ac.SecretKeySelector().WithName(pw.Secret).WithKey(pw.Key)))
	}
	// redis-cli prints an error but exits 0 on a refused PING, so the reply
	// itself is checked.
	ping := corev1ac.ExecAction().WithCommand("sh", "-c", "redis-cli -p "+strconv.Itoa(redisnames.Port)+" ping | grep -q PONG")
	container := corev1ac.Container().
		WithName(redisContainer).
		WithImage(image).
		WithCommand("redis-server").
		// One file serves every pod, so the per-pod announced name comes as
		// an argument (Kubernetes expands $(VAR) from the environment). The
		// password comes from the auth Secret's file: an argument would show
		// it to anyone who can list the node's processes.
		WithArgs(
			redisConfigDir+"/"+redisnames.ConfigKey,
			"--include", redisAuthDir+"/"+redisnames.AuthConfKey,
			"--cluster-announce-hostname", fmt.Sprintf("$(%s).%s.%s.svc", envPodName, headless, rc.Namespace),
		).
		WithEnv(
			corev1ac.EnvVar().WithName(envPodName).WithValueFrom(corev1ac.EnvVarSource().
				WithFieldRef(corev1ac.ObjectFieldSelector().WithFieldPath("metadata.name"))),
			secretEnv(envCLIAuth),
		).
		WithPorts(
			corev1ac.ContainerPort().WithName("redis").WithContainerPort(redisnames.Port),
			corev1ac.ContainerPort().WithName("bus").WithContainerPort(redisnames.BusPort),
		).
		WithReadinessProbe(corev1ac.Probe().WithExec(ping).
			WithInitialDelaySeconds(5).WithPeriodSeconds(5).WithTimeoutSeconds(3).WithFailureThreshold(3)).
		// Loading a large RDB or AOF takes a while; liveness must not kill
		// a node that is still loading, so it is more patient than readiness.
		WithLivenessProbe(corev1ac.Probe().WithExec(ping).
			WithInitialDelaySeconds(30).WithPeriodSeconds(10).WithTimeoutSeconds(5).WithFailureThreshold(6)).
		WithResources(corev1ac.ResourceRequirements().
			WithLimits(rc.Spec.Resources.Limits).
			WithRequests(rc.Spec.Resources.Requests)).
		WithVolumeMounts(
			corev1ac.VolumeMount().WithName(redisConfVolume).WithMountPath(redisConfigDir).WithReadOnly(true),
			corev1ac.VolumeMount().WithName(redisAuthVolume).WithMountPath(redisAuthDir).WithReadOnly(true),
			corev1ac.VolumeMount().WithName(redisDataVolume).WithMountPath(redisconf.DefaultDir),
		)

	volumes := []*corev1ac.VolumeApplyConfiguration{
		corev1ac.Volume().WithName(redisConfVolume).WithConfigMap(corev1ac.ConfigMapVolumeSource().WithName(redisnames.ConfigMap(rc.Name))),
		// Readable by the redis user (fsGroup 999) only.
		corev1ac.Volume().WithName(redisAuthVolume).WithSecret(corev1ac.SecretVolumeSource().
			WithSecretName(redisnames.AuthSecret(rc.Name)).WithDefaultMode(0o440)),
	}
	spec := appsv1ac.StatefulSetSpec().
		WithReplicas(replicas).
		WithServiceName(headless).
		// Nodes form the cluster together; starting them one by one only
		// delays formation.
		WithPodManagementPolicy(appsv1.ParallelPodManagement).
		WithSelector(metav1ac.LabelSelector().WithMatchLabels(redisLabels(rc.Name)))
	if st := rc.Spec.Storage; st != nil {
		pvc := corev1ac.PersistentVolumeClaimSpec().
			WithAccessModes(corev1.ReadWriteOnce).
			WithResources(corev1ac.VolumeResourceRequirements().WithRequests(corev1.ResourceList{corev1.ResourceStorage: st.Size}))
		if st.StorageClassName != nil {
			pvc = pvc.WithStorageClassName(*st.StorageClassName)
		}
		spec = spec.WithVolumeClaimTemplates(corev1ac.PersistentVolumeClaim(redisDataVolume, "").WithSpec(pvc))
	} else {
		volumes = append(volumes, corev1ac.Volume().WithName(redisDataVolume).WithEmptyDir(corev1ac.EmptyDirVolumeSource()))
	}

	pod := corev1ac.PodTemplateSpec().
		WithLabels(objectLabels(rc.Name)).
		WithAnnotations(map[string]string{AnnotationRedisRestartHash: conf.RestartHash}).
		WithSpec(corev1ac.PodSpec().
			WithContainers(container).
			WithVolumes(volumes...).
			// SIGTERM makes redis-server wait (shutdown-timeout) for its
			// replicas to catch up, then save and fsync; give it the time.
			WithTerminationGracePeriodSeconds(60).
			// The official image's redis user; fsGroup makes volumes writable.
			WithSecurityContext(corev1ac.PodSecurityContext().
				WithRunAsNonRoot(true).WithRunAsUser(999).WithRunAsGroup(999).WithFSGroup(999)).
			// A primary and its replica on one node would lose the shard
			// with the node; spread by hostname where the scheduler can.
			WithAffinity(corev1ac.Affinity().WithPodAntiAffinity(corev1ac.PodAntiAffinity().
				WithPreferredDuringSchedulingIgnoredDuringExecution(corev1ac.WeightedPodAffinityTerm().
					WithWeight(100).
					WithPodAffinityTerm(corev1ac.PodAffinityTerm().
						WithTopologyKey(corev1.LabelHostname).
						WithLabelSelector(metav1ac.LabelSelector().WithMatchLabels(redisLabels(rc.Name))))))))
	return appsv1ac.StatefulSet(rc.Name, rc.Namespace).
		WithLabels(objectLabels(rc.Name)).
		WithOwnerReferences(ownerRef(rc)).
		WithSpec(spec.WithTemplate(pod))
}

// statefulSetReplicas keeps the current size while a scale-in has not yet
// drained the leaving nodes: removing their pods first would take their
// slots offline.
func statefulSetReplicas(desired, current int32, scaleInPending bool) int32 {
	if scaleInPending && current > desired {
		return current
	}
	return desired
}
