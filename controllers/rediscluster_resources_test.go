package controllers

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/utils/ptr"

	"github.com/gatehouse-dev/gatehouse/api/v1alpha1"
	"github.com/gatehouse-dev/gatehouse/internal/redisconf"
)

func testCluster(mutate func(*v1alpha1.RedisCluster)) *v1alpha1.RedisCluster {
	rc := &v1alpha1.RedisCluster{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "sessions", UID: types.UID("uid-1")},
		Spec:       v1alpha1.RedisClusterSpec{Shards: 3, ReplicasPerShard: ptr.To[int32](1), Profile: v1alpha1.ProfileDurable},
	}
	if mutate != nil {
		mutate(rc)
	}
	return rc
}

func TestRenderRedisConfig(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*v1alpha1.RedisCluster)
		want    []string // lines that must be present
		wantErr []string // substrings of the error
	}{{
		name: "durable",
		want: []string{"maxmemory-policy noeviction", "appendonly yes", "port 6379", "cluster-port 16379", "maxmemory 8gb"},
	}, {
		name:   "cache",
		mutate: func(rc *v1alpha1.RedisCluster) { rc.Spec.Profile = v1alpha1.ProfileCache },
		want:   []string{"maxmemory-policy allkeys-lru", "appendonly no"},
	}, {
		name:   "empty profile is the CRD default, Durable",
		mutate: func(rc *v1alpha1.RedisCluster) { rc.Spec.Profile = "" },
		want:   []string{"maxmemory-policy noeviction"},
	}, {
		name:   "override",
		mutate: func(rc *v1alpha1.RedisCluster) { rc.Spec.Config = map[string]string{"maxmemory": "2gb"} },
		want:   []string{"maxmemory 2gb"},
	}, {
		name: "every invalid override at once",
		mutate: func(rc *v1alpha1.RedisCluster) {
			rc.Spec.Config = map[string]string{"maxmemory-policy": "allkeys-lru", "hz": "100000", "bogus": "1"}
		},
		wantErr: []string{"maxmemory-policy", "hz", "bogus"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conf, err := renderRedisConfig(testCluster(tt.mutate))
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatal("want an error")
				}
				for _, s := range tt.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not mention %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(conf.Text, "\n")
			for _, w := range tt.want {
				if !contains(lines, w) {
					t.Errorf("redis.conf lacks %q:\n%s", w, conf.Text)
				}
			}
			if conf.Hash != redisconf.Hash(conf.Text) || conf.RestartHash != redisconf.RestartHash(conf.Directives) {
				t.Error("hashes do not match the text")
			}
		})
	}
}

func contains(lines []string, s string) bool {
	return slices.Contains(lines, s)
}

func TestRestartHashIgnoresLiveSettings(t *testing.T) {
	hash := func(cfg map[string]string) string {
		conf, err := renderRedisConfig(testCluster(func(rc *v1alpha1.RedisCluster) { rc.Spec.Config = cfg }))
		if err != nil {
			t.Fatal(err)
		}
		sts := redisStatefulSet(testCluster(nil), conf, passwordRef{"s", "password"}, 6)
		return sts.Spec.Template.Annotations[AnnotationRedisRestartHash]
	}
	base := hash(nil)
	if got := hash(map[string]string{"maxmemory": "1gb", "hz": "20"}); got != base {
		t.Errorf("live settings changed the pod template: %s != %s", got, base)
	}
	if got := hash(map[string]string{"tcp-backlog": "1024"}); got == base {
		t.Error("a restart-only setting did not change the pod template")
	}
}

func TestLiveChanges(t *testing.T) {
	ds := []redisconf.Directive{{Name: "port", Value: "6379"}, {Name: "maxmemory", Value: "8gb"}, {Name: "tcp-backlog", Value: "511"}, {Name: "save", Value: "900 1"}}
	want := []any{"CONFIG", "SET", "maxmemory", "8gb", "save", "900 1"}
	if diff := cmp.Diff(want, redisconf.ConfigSetArgs(liveChanges(ds))); diff != "" {
		t.Errorf("CONFIG SET (-want +got):\n%s", diff)
	}
}

func TestRedisStatefulSet(t *testing.T) {
	storage := func(rc *v1alpha1.RedisCluster) {
		rc.Spec.Storage = &v1alpha1.RedisStorage{Size: resource.MustParse("10Gi"), StorageClassName: new("fast")}
	}
	tests := []struct {
		name      string
		mutate    func(*v1alpha1.RedisCluster)
		pw        passwordRef
		wantPVC   bool
		wantImage string
	}{
		{name: "emptyDir without storage", pw: passwordRef{"sessions-password", "password"}, wantImage: "redis:7.2.5"},
		{name: "claims with storage", mutate: storage, pw: passwordRef{"mine", "pw"}, wantPVC: true, wantImage: "redis:7.2.5"},
		{name: "image", mutate: func(rc *v1alpha1.RedisCluster) { rc.Spec.Image = "redis:7.4" }, pw: passwordRef{"x", "y"}, wantImage: "redis:7.4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := testCluster(tt.mutate)
			conf, err := renderRedisConfig(rc)
			if err != nil {
				t.Fatal(err)
			}
			sts := redisStatefulSet(rc, conf, tt.pw, 6)
			spec := sts.Spec
			if *spec.Replicas != 6 || *spec.ServiceName != "sessions-nodes" || *spec.PodManagementPolicy != "Parallel" {
				t.Errorf("replicas, serviceName, policy = %d, %s, %s", *spec.Replicas, *spec.ServiceName, *spec.PodManagementPolicy)
			}
			if diff := cmp.Diff(redisLabels("sessions"), spec.Selector.MatchLabels); diff != "" {
				t.Errorf("selector (-want +got):\n%s", diff)
			}
			if len(sts.OwnerReferences) != 1 || *sts.OwnerReferences[0].UID != "uid-1" || !*sts.OwnerReferences[0].Controller {
				t.Errorf("owner references = %+v", sts.OwnerReferences)
			}
			pod := spec.Template.Spec
			c := pod.Containers[0]
			if *c.Image != tt.wantImage {
				t.Errorf("image = %s", *c.Image)
			}
			// The password comes from the included auth Secret's file, never
			// the command line (ps shows argv to every user of the node).
			wantArgs := []string{"/etc/redis/redis.conf", "--include", "/etc/redis/auth/auth.conf",
				"--cluster-announce-hostname", "$(POD_NAME).sessions-nodes.shop.svc"}
			if diff := cmp.Diff(wantArgs, c.Args); diff != "" {
				t.Errorf("args (-want +got):\n%s", diff)
			}
			var authMounted, authVolume bool
			for _, m := range c.VolumeMounts {
				authMounted = authMounted || (*m.Name == "auth" && *m.MountPath == "/etc/redis/auth" && *m.ReadOnly)
			}
			for _, v := range pod.Volumes {
				authVolume = authVolume || (*v.Name == "auth" && v.Secret != nil && *v.Secret.SecretName == "sessions-auth")
			}
			if !authMounted || !authVolume {
				t.Errorf("auth Secret mounted %v, volume %v", authMounted, authVolume)
			}
			secrets := map[string]string{}
			for _, e := range c.Env {
				if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
					secrets[*e.Name] = *e.ValueFrom.SecretKeyRef.Name + "/" + *e.ValueFrom.SecretKeyRef.Key
				}
			}
			ref := tt.pw.Secret + "/" + tt.pw.Key
			if diff := cmp.Diff(map[string]string{"REDISCLI_AUTH": ref}, secrets); diff != "" {
				t.Errorf("secret env (-want +got):\n%s", diff)
			}
			for name, probe := range map[string]*corev1ac.ProbeApplyConfiguration{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
				if probe == nil || probe.Exec == nil || !strings.Contains(strings.Join(probe.Exec.Command, " "), "redis-cli -p 6379 ping") {
					t.Errorf("%s probe = %+v", name, probe)
				}
			}
			if *pod.TerminationGracePeriodSeconds < 30 {
				t.Errorf("terminationGracePeriodSeconds = %d", *pod.TerminationGracePeriodSeconds)
			}
			aff := pod.Affinity.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution
			if len(aff) != 1 || *aff[0].PodAffinityTerm.TopologyKey != corev1.LabelHostname {
				t.Errorf("anti-affinity = %+v", aff)
			}
			if got := spec.Template.Annotations[AnnotationRedisRestartHash]; got != conf.RestartHash {
				t.Errorf("restart hash annotation = %q", got)
			}
			hasEmptyDir := false
			for _, v := range pod.Volumes {
				if *v.Name == "data" && v.EmptyDir != nil {
					hasEmptyDir = true
				}
			}
			if tt.wantPVC == hasEmptyDir || tt.wantPVC != (len(spec.VolumeClaimTemplates) == 1) {
				t.Errorf("emptyDir %v, claims %d, want claims %v", hasEmptyDir, len(spec.VolumeClaimTemplates), tt.wantPVC)
			}
			if tt.wantPVC {
				pvc := spec.VolumeClaimTemplates[0]
				if *pvc.Name != "data" || *pvc.Spec.StorageClassName != "fast" || pvc.Spec.Resources.Requests.Storage().String() != "10Gi" {
					t.Errorf("claim = %+v", pvc)
				}
			}
		})
	}
}

func TestRedisServicesAndPDB(t *testing.T) {
	rc := testCluster(nil)
	headless := redisHeadlessService(rc)
	if *headless.Name != "sessions-nodes" || *headless.Spec.ClusterIP != "None" || !*headless.Spec.PublishNotReadyAddresses {
		t.Errorf("headless = %+v", headless.Spec)
	}
	client := redisClientService(rc)
	if *client.Name != "sessions-client" || len(client.Spec.Ports) != 1 || *client.Spec.Ports[0].Port != 6379 {
		t.Errorf("client service = %+v", client.Spec)
	}
	pdb := redisPDB(rc)
	if pdb.Spec.MaxUnavailable.IntValue() != 1 {
		t.Errorf("maxUnavailable = %v", pdb.Spec.MaxUnavailable)
	}
	for name, refs := range map[string]int{
		"headless": len(headless.OwnerReferences), "client": len(client.OwnerReferences), "pdb": len(pdb.OwnerReferences),
		"configmap": len(redisConfigMap(rc, redisConfig{}).OwnerReferences), "secret": len(redisPasswordSecret(rc, "x").OwnerReferences),
	} {
		if refs != 1 {
			t.Errorf("%s has %d owner references", name, refs)
		}
	}
}

func TestRedisPasswordRef(t *testing.T) {
	tests := []struct {
		name string
		ref  *v1alpha1.SecretKeyReference
		want passwordRef
	}{
		{"generated", nil, passwordRef{"sessions-password", "password"}},
		{"given", &v1alpha1.SecretKeyReference{Name: "mine", Key: "pw"}, passwordRef{"mine", "pw"}},
		{"given, default key", &v1alpha1.SecretKeyReference{Name: "mine"}, passwordRef{"mine", "password"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := redisPasswordRef(testCluster(func(rc *v1alpha1.RedisCluster) { rc.Spec.PasswordSecretRef = tt.ref }))
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(passwordRef{})); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestStatefulSetReplicas(t *testing.T) {
	tests := []struct {
		name             string
		desired, current int32
		pending          bool
		want             int32
	}{
		{"create", 6, 0, false, 6},
		{"scale out at once", 8, 6, false, 8},
		{"scale in waits for the drain", 6, 8, true, 8},
		{"scale in after the drain", 6, 8, false, 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := statefulSetReplicas(tt.desired, tt.current, tt.pending); got != tt.want {
				t.Errorf("got %d, want %d", got, tt.want)
			}
		})
	}
}

func TestRedisAuthSecret(t *testing.T) {
	rc := testCluster(nil)
	s := redisAuthSecret(rc, `p "w"`)
	if *s.Name != "sessions-auth" || *s.Namespace != rc.Namespace {
		t.Errorf("name = %s/%s", *s.Namespace, *s.Name)
	}
	if diff := cmp.Diff(map[string][]byte{"auth.conf": []byte("requirepass \"p \\\"w\\\"\"\nmasterauth \"p \\\"w\\\"\"\n")}, s.Data); diff != "" {
		t.Errorf("data (-want +got):\n%s", diff)
	}
	// The operator's Secret informer selects this label: without it the
	// reconciler would never see its own Secret's changes.
	if s.Labels[LabelRedisPassword] != LabelRedisPasswordValue {
		t.Errorf("labels = %v", s.Labels)
	}
	if len(s.OwnerReferences) != 1 || !*s.OwnerReferences[0].Controller {
		t.Errorf("owner references = %+v", s.OwnerReferences)
	}
	if got := redisPasswordSecret(rc, "x").Labels[LabelRedisPassword]; got != LabelRedisPasswordValue {
		t.Errorf("generated password Secret label = %q", got)
	}
}
