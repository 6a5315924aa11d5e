package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gatehouse-dev/gatehouse/api/v1alpha1"
	"github.com/gatehouse-dev/gatehouse/controllers"
	"github.com/gatehouse-dev/gatehouse/hack/demo/app"
	"github.com/gatehouse-dev/gatehouse/sidecar/contract"
)

// createPod creates the storefront pod through the API server, which calls
// the webhook, and returns the pod as stored: with the injected sidecar.
func (d *demo) createPod(ctx context.Context) (*corev1.Pod, error) {
	d.out.begin("Create the storefront pod through the API server (the webhook injects the sidecar)")
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:      podName,
			Namespace: shopNamespace,
			Labels:    map[string]string{"app": "storefront", "tier": "web"},
		},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name:  "catalogue",
			Image: "ghcr.io/gatehouse-dev/catalogue-demo:v0.1.0",
			Ports: []corev1.ContainerPort{{Name: appPortName, ContainerPort: appPort}},
			// How the app finds the admin API: the socket in the volume the
			// webhook mounts into every app container.
			Env: []corev1.EnvVar{{Name: sidecarAdminEnv, Value: contract.UnixPrefix + contract.AdminSocket}},
		}}},
	}
	if err := d.k8s.Create(ctx, pod); err != nil {
		return nil, fmt.Errorf("create pod: %w", err)
	}
	if err := d.k8s.Get(ctx, client.ObjectKeyFromObject(pod), pod); err != nil {
		return nil, fmt.Errorf("read back pod: %w", err)
	}
	sc := sidecarOf(pod)
	if sc == nil {
		return nil, fmt.Errorf("pod %s/%s was not injected (annotations %v)", shopNamespace, podName, pod.Annotations)
	}
	d.out.ok("pod %s/%s injected: init container %q (restartPolicy %s), image %s", shopNamespace, podName, sc.Name, ptrString(sc.RestartPolicy), sc.Image)
	d.out.say("args: %s", strings.Join(sc.Args, " "))
	for _, e := range sc.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			d.out.say("env:  %s from Secret %s key %s", e.Name, e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key)
		} else {
			d.out.say("env:  %s=%s", e.Name, e.Value)
		}
	}
	for _, m := range sc.VolumeMounts {
		d.out.say("mount: %s at %s", m.Name, m.MountPath)
	}
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			d.out.say("app container %q port %d now named %q (the sidecar took over %q)", c.Name, p.ContainerPort, p.Name, appPortName)
		}
	}
	return pod, nil
}

func ptrString[T ~string](p *T) string {
	if p == nil {
		return "<unset>"
	}
	return string(*p)
}

func sidecarOf(pod *corev1.Pod) *corev1.Container {
	for i := range pod.Spec.InitContainers {
		if pod.Spec.InitContainers[i].Name == controllers.SidecarContainerName {
			return &pod.Spec.InitContainers[i]
		}
	}
	return nil
}

// runPod plays the kubelet for the pod: it materialises the sidecar's
// volumes under a local root, maps the pod's ports to free loopback ports,
// and starts the sidecar binary with exactly the injected args and env
// (paths and ports translated) and the app on the app's port.
func (d *demo) runPod(ctx, bgCtx context.Context, pod *corev1.Pod) error {
	d.out.begin("Run the pod locally: the sidecar binary with the injected args/env, the catalogue app behind it")
	sc := sidecarOf(pod)
	root := filepath.Join(d.tmp, "pod")
	d.sync = &volumeSync{k8s: d.k8s, namespace: pod.Namespace, root: root}
	if err := d.sync.materialise(ctx, pod, sc); err != nil {
		return err
	}
	d.bg.Go(func() {
		d.sync.run(bgCtx)
	})

	// The app's port first, so that the sidecar's --upstream maps onto it.
	appLocal := d.ports.local(appPort)
	args := make([]string, 0, len(sc.Args))
	for _, a := range sc.Args {
		t := d.translateArg(a, root, sc.VolumeMounts)
		args = append(args, t)
	}
	env, err := d.containerEnv(ctx, pod, sc)
	if err != nil {
		return err
	}
	d.out.say("port mapping (pod → this machine):")
	for _, m := range d.ports.list() {
		d.out.say("  %5d → 127.0.0.1:%d", m[0], m[1])
	}
	d.out.say("volume mounts → %s/…", root)
	d.out.say("translated args: %s", strings.Join(args, " "))

	bin := d.o.sidecarBin
	if bin == "" {
		bin = filepath.Join(d.tmp, "bin", "gatehouse-sidecar")
		cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/sidecar")
		cmd.Dir = d.o.root
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("build gatehouse-sidecar: %w\n%s", err, out)
		}
	}
	if err := checkFlags(ctx, bin, args); err != nil {
		return err
	}

	// The app: in a pod it reads the admin address from its env and finds
	// the socket in its own mount of the shared volume; here that mount is
	// the same local directory the sidecar's is.
	appCtr := &pod.Spec.Containers[0]
	d.appURL = fmt.Sprintf("http://127.0.0.1:%d", appLocal)
	d.adminURL = d.translateValue(envValue(appCtr, sidecarAdminEnv), root, appCtr.VolumeMounts)
	appLog, err := os.Create(d.logPath("app"))
	if err != nil {
		return err
	}
	catalogue := app.New(d.adminURL, slog.New(slog.NewJSONHandler(appLog, nil)))
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", appLocal))
	if err != nil {
		appLog.Close()
		return fmt.Errorf("app listen: %w", err)
	}
	d.appServer = &http.Server{Handler: catalogue.Handler(), ReadHeaderTimeout: 5 * time.Second}
	d.bg.Go(func() {
		defer appLog.Close()
		_ = d.appServer.Serve(ln)
	})

	if d.sidecar, err = d.procs.start("sidecar", d.logPath("sidecar"), bin, args, env); err != nil {
		return err
	}
	d.dataURL = fmt.Sprintf("http://127.0.0.1:%d", d.ports.local(contract.ProxyPort))
	d.statusURL = fmt.Sprintf("http://127.0.0.1:%d", d.ports.local(contract.StatusPort))
	// Probe readiness where the kubelet would: the readiness probe's path
	// on its (named) port.
	if d.readyURL, err = d.probeURL(sc); err != nil {
		return err
	}
	d.out.say("readiness probe (as the kubelet runs it): GET %s", d.readyURL)
	start := time.Now()
	if err := poll(ctx, 30*time.Second, func() error {
		if done, perr := d.sidecar.exited(); done {
			return fmt.Errorf("sidecar exited: %v (see %s)", perr, d.sidecar.log)
		}
		rd, err := d.readiness(ctx)
		if err != nil {
			return err
		}
		if !rd.Ready {
			return fmt.Errorf("sidecar not ready: %+v", rd.Checks)
		}
		return nil
	}); err != nil {
		return err
	}
	rd, _ := d.readiness(ctx)
	d.out.ok("sidecar ready in %s (config %s, policies %s)", time.Since(start).Round(100*time.Millisecond), rd.Config.Hash, strings.Join(rd.Policies, ", "))
	d.out.ok("catalogue app on %s, sidecar data port %s", d.appURL, d.dataURL)
	return d.reportRunning(ctx, pod)
}

// reportRunning writes the pod's status as the kubelet would once its
// containers are ready, and waits for the policies to count the pod.
func (d *demo) reportRunning(ctx context.Context, pod *corev1.Pod) error {
	if err := d.k8s.Get(ctx, client.ObjectKeyFromObject(pod), pod); err != nil {
		return fmt.Errorf("read pod: %w", err)
	}
	now := metav1.Now()
	cond := func(t corev1.PodConditionType) corev1.PodCondition {
		return corev1.PodCondition{Type: t, Status: corev1.ConditionTrue, LastTransitionTime: now}
	}
	pod.Status = corev1.PodStatus{
		Phase:     corev1.PodRunning,
		HostIP:    "127.0.0.1",
		PodIP:     "127.0.0.1",
		PodIPs:    []corev1.PodIP{{IP: "127.0.0.1"}},
		StartTime: &now,
		Conditions: []corev1.PodCondition{
			cond(corev1.PodScheduled), cond(corev1.PodInitialized), cond(corev1.ContainersReady), cond(corev1.PodReady),
		},
	}
	if err := d.k8s.Status().Update(ctx, pod); err != nil {
		return fmt.Errorf("report pod status: %w", err)
	}
	err := poll(ctx, 30*time.Second, func() error {
		var p v1alpha1.RateLimitPolicy
		if err := d.k8s.Get(ctx, client.ObjectKey{Namespace: shopNamespace, Name: rateLimitName}, &p); err != nil {
			return err
		}
		if p.Status.SelectedPods != 1 {
			return fmt.Errorf("RateLimitPolicy %s counts %d running pods with the sidecar, want 1", rateLimitName, p.Status.SelectedPods)
		}
		return nil
	})
	if err != nil {
		return err
	}
	d.out.ok("pod status Running/Ready reported as the kubelet would; the policies count it (status.selectedPods=1)")
	return nil
}

// probeURL is the local URL of the container's readiness probe.
func (d *demo) probeURL(c *corev1.Container) (string, error) {
	p := c.ReadinessProbe
	if p == nil || p.HTTPGet == nil {
		return "", fmt.Errorf("container %s: no HTTP readiness probe", c.Name)
	}
	port := p.HTTPGet.Port.IntValue()
	if name := p.HTTPGet.Port.StrVal; name != "" {
		i := slices.IndexFunc(c.Ports, func(cp corev1.ContainerPort) bool { return cp.Name == name })
		if i < 0 {
			return "", fmt.Errorf("container %s: readiness probe port %q is not a container port", c.Name, name)
		}
		port = int(c.Ports[i].ContainerPort)
	}
	return fmt.Sprintf("http://127.0.0.1:%d%s", d.ports.local(port), p.HTTPGet.Path), nil
}

// checkFlags fails early, and clearly, when the webhook injects a flag the
// sidecar binary does not know: in a cluster that pod would crash-loop.
func checkFlags(ctx context.Context, bin string, args []string) error {
	out, _ := exec.CommandContext(ctx, bin, "-h").CombinedOutput()
	var missing []string
	for _, a := range args {
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !bytes.Contains(out, []byte("-"+name+" ")) && !bytes.Contains(out, []byte("-"+name+"\n")) {
			missing = append(missing, "--"+name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("the webhook injects %s, which gatehouse-sidecar does not accept: an injected pod would crash-loop", strings.Join(missing, ", "))
	}
	return nil
}

var addrRE = regexp.MustCompile(`^([a-zA-Z0-9.\-]*|\[[0-9a-fA-F:]+\]):([0-9]{1,5})$`)

// translateArg maps one injected argument onto this machine: mount paths
// to the local volume root, pod ports to the mapped loopback ports. An
// empty host (":15080") becomes 127.0.0.1: nothing here listens beyond
// loopback.
func (d *demo) translateArg(arg, root string, mounts []corev1.VolumeMount) string {
	name, value, ok := strings.Cut(arg, "=")
	if !ok || !strings.HasPrefix(name, "-") {
		return arg
	}
	return name + "=" + d.translateValue(value, root, mounts)
}

// translateValue maps one value: a path under a mount (also as a Unix
// socket address, "unix:/path"), a URL or a host:port.
func (d *demo) translateValue(value, root string, mounts []corev1.VolumeMount) string {
	if path, ok := strings.CutPrefix(value, contract.UnixPrefix); ok {
		return contract.UnixPrefix + d.translateValue(path, root, mounts)
	}
	for _, m := range mounts {
		if value == m.MountPath || strings.HasPrefix(value, m.MountPath+"/") {
			return filepath.Join(root, value)
		}
	}
	if u, err := url.Parse(value); err == nil && u.Scheme != "" && u.Host != "" {
		if port, err := strconv.Atoi(u.Port()); err == nil {
			u.Host = net.JoinHostPort(u.Hostname(), strconv.Itoa(d.ports.local(port)))
			return u.String()
		}
	}
	if m := addrRE.FindStringSubmatch(value); m != nil {
		port, _ := strconv.Atoi(m[2])
		host := m[1]
		if host == "" || host == "0.0.0.0" {
			host = "127.0.0.1"
		}
		return net.JoinHostPort(strings.Trim(host, "[]"), strconv.Itoa(d.ports.local(port)))
	}
	return value
}

// envValue is the literal value of a container's env var.
func envValue(c *corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

// containerEnv resolves the container's env as the kubelet would: values,
// Secret and ConfigMap keys (optional ones may be missing), pod fields.
func (d *demo) containerEnv(ctx context.Context, pod *corev1.Pod, c *corev1.Container) ([]string, error) {
	var env []string
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env = append(env, e.Name+"="+e.Value)
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			v, err := d.secretValue(ctx, ref.Name, ref.Key)
			if err != nil {
				if ref.Optional != nil && *ref.Optional {
					continue
				}
				return nil, fmt.Errorf("env %s: %w", e.Name, err)
			}
			env = append(env, e.Name+"="+v)
		case e.ValueFrom.ConfigMapKeyRef != nil:
			ref := e.ValueFrom.ConfigMapKeyRef
			var cm corev1.ConfigMap
			err := d.k8s.Get(ctx, client.ObjectKey{Namespace: pod.Namespace, Name: ref.Name}, &cm)
			v, found := cm.Data[ref.Key]
			if err != nil || !found {
				if ref.Optional != nil && *ref.Optional {
					continue
				}
				return nil, fmt.Errorf("env %s: configmap %s key %s: %v", e.Name, ref.Name, ref.Key, err)
			}
			env = append(env, e.Name+"="+v)
		case e.ValueFrom.FieldRef != nil:
			v, err := fieldValue(pod, e.ValueFrom.FieldRef.FieldPath)
			if err != nil {
				return nil, fmt.Errorf("env %s: %w", e.Name, err)
			}
			env = append(env, e.Name+"="+v)
		default:
			return nil, fmt.Errorf("env %s: this demo cannot resolve %+v", e.Name, e.ValueFrom)
		}
	}
	return env, nil
}

func fieldValue(pod *corev1.Pod, path string) (string, error) {
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "spec.nodeName":
		return "localhost", nil
	case "status.podIP", "status.hostIP":
		return "127.0.0.1", nil
	case "metadata.labels":
		return formatMap(pod.Labels), nil
	case "metadata.annotations":
		return formatMap(pod.Annotations), nil
	}
	return "", fmt.Errorf("field %s: not supported by the demo", path)
}

// formatMap is the downward API's file format: key="value" lines, sorted,
// values quoted as Go string literals.
func formatMap(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(k + "=" + strconv.Quote(m[k]))
	}
	return b.String()
}

// portMap maps pod ports to free loopback ports, allocating on first use.
type portMap struct {
	mu sync.Mutex
	m  map[int]int
}

func newPortMap() *portMap { return &portMap{m: map[int]int{}} }

// local returns the loopback port for a pod port, given as a number or as
// a host:port string. It panics on nothing: a port that cannot be
// allocated maps to itself and the listen fails loudly.
func (p *portMap) local(port any) int {
	var n int
	switch v := port.(type) {
	case int:
		n = v
	case string:
		_, ps, _ := net.SplitHostPort(v)
		n, _ = strconv.Atoi(ps)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if l, ok := p.m[n]; ok {
		return l
	}
	l, err := freePort()
	if err != nil {
		l = n
	}
	p.m[n] = l
	return l
}

func (p *portMap) list() [][2]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([][2]int, 0, len(p.m))
	for k, v := range p.m {
		out = append(out, [2]int{k, v})
	}
	slices.SortFunc(out, func(a, b [2]int) int { return a[0] - b[0] })
	return out
}

// volumeSync materialises the sidecar's volumes the way the kubelet does
// and keeps ConfigMap volumes in sync with a watch: each update is written
// into a fresh timestamped directory and published by atomically renaming
// the ..data symlink, so the sidecar never sees a half-written file.
type volumeSync struct {
	k8s       client.WithWatch
	namespace string
	root      string

	mu sync.Mutex
	// configMaps maps a ConfigMap name to the volumes projecting it.
	configMaps map[string][]cmVolume
	// written is the content last published per directory.
	written map[string]map[string][]byte
	// updates counts publications per ConfigMap, for the tour's output.
	updates map[string]int
}

type cmVolume struct {
	dir   string
	items []corev1.KeyToPath
}

func (s *volumeSync) materialise(ctx context.Context, pod *corev1.Pod, c *corev1.Container) error {
	s.configMaps = map[string][]cmVolume{}
	s.written = map[string]map[string][]byte{}
	s.updates = map[string]int{}
	for _, m := range c.VolumeMounts {
		i := slices.IndexFunc(pod.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == m.Name })
		if i < 0 {
			return fmt.Errorf("mount %s: no such volume", m.Name)
		}
		v := pod.Spec.Volumes[i]
		dir := filepath.Join(s.root, m.MountPath)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("volume %s: %w", v.Name, err)
		}
		switch {
		case v.ConfigMap != nil:
			s.configMaps[v.ConfigMap.Name] = append(s.configMaps[v.ConfigMap.Name], cmVolume{dir: dir, items: v.ConfigMap.Items})
			var cm corev1.ConfigMap
			err := s.k8s.Get(ctx, client.ObjectKey{Namespace: s.namespace, Name: v.ConfigMap.Name}, &cm)
			if err != nil && (client.IgnoreNotFound(err) != nil || v.ConfigMap.Optional == nil || !*v.ConfigMap.Optional) {
				return fmt.Errorf("volume %s: configmap %s: %w", v.Name, v.ConfigMap.Name, err)
			}
			if err := s.publishConfigMap(&cm, v.ConfigMap.Name); err != nil {
				return err
			}
		case v.DownwardAPI != nil:
			files := map[string][]byte{}
			for _, item := range v.DownwardAPI.Items {
				if item.FieldRef == nil {
					return fmt.Errorf("volume %s: only fieldRef items are supported", v.Name)
				}
				val, err := fieldValue(pod, item.FieldRef.FieldPath)
				if err != nil {
					return fmt.Errorf("volume %s: %w", v.Name, err)
				}
				files[item.Path] = []byte(val)
			}
			if err := s.publish(dir, files); err != nil {
				return err
			}
		case v.EmptyDir != nil:
		default:
			return fmt.Errorf("volume %s: this demo supports ConfigMap, downward API and emptyDir volumes", v.Name)
		}
	}
	return nil
}

// publishConfigMap writes cm into every volume projecting it; a missing
// (optional) ConfigMap empties them, as the kubelet does.
func (s *volumeSync) publishConfigMap(cm *corev1.ConfigMap, name string) error {
	s.mu.Lock()
	vols := s.configMaps[name]
	s.mu.Unlock()
	for _, v := range vols {
		files := map[string][]byte{}
		if len(v.items) == 0 {
			for k, val := range cm.Data {
				files[k] = []byte(val)
			}
		}
		for _, item := range v.items {
			if val, ok := cm.Data[item.Key]; ok {
				files[item.Path] = []byte(val)
			}
		}
		if err := s.publish(v.dir, files); err != nil {
			return err
		}
	}
	return nil
}

// publish atomically replaces the files of dir, kubelet style:
// dir/..<timestamp>/<files>, dir/..data → ..<timestamp>, dir/<file> →
// ..data/<file>. Unchanged content is not republished.
func (s *volumeSync) publish(dir string, files map[string][]byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if prev, ok := s.written[dir]; ok && sameFiles(prev, files) {
		return nil
	}
	ts, err := os.MkdirTemp(dir, ".."+time.Now().UTC().Format("2006_01_02_15_04_05."))
	if err != nil {
		return fmt.Errorf("publish %s: %w", dir, err)
	}
	for name, data := range files {
		path := filepath.Join(ts, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return fmt.Errorf("publish %s: %w", dir, err)
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			return fmt.Errorf("publish %s: %w", dir, err)
		}
	}
	dataLink := filepath.Join(dir, "..data")
	old, _ := os.Readlink(dataLink)
	tmpLink := filepath.Join(dir, "..data_tmp")
	_ = os.Remove(tmpLink)
	if err := os.Symlink(filepath.Base(ts), tmpLink); err != nil {
		return fmt.Errorf("publish %s: %w", dir, err)
	}
	if err := os.Rename(tmpLink, dataLink); err != nil {
		return fmt.Errorf("publish %s: %w", dir, err)
	}
	for name := range files {
		top, _, _ := strings.Cut(name, "/")
		link := filepath.Join(dir, top)
		if _, err := os.Lstat(link); errors.Is(err, os.ErrNotExist) {
			if err := os.Symlink(filepath.Join("..data", top), link); err != nil {
				return fmt.Errorf("publish %s: %w", dir, err)
			}
		}
	}
	// Files that disappeared lose their user-visible link.
	for name := range s.written[dir] {
		if _, ok := files[name]; !ok {
			_ = os.Remove(filepath.Join(dir, strings.SplitN(name, "/", 2)[0]))
		}
	}
	if old != "" {
		_ = os.RemoveAll(filepath.Join(dir, old))
	}
	s.written[dir] = files
	return nil
}

func sameFiles(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || !bytes.Equal(v, w) {
			return false
		}
	}
	return true
}

// run watches the projected ConfigMaps until ctx ends, re-establishing the
// watch when the API server closes it.
func (s *volumeSync) run(ctx context.Context) {
	s.mu.Lock()
	names := make([]string, 0, len(s.configMaps))
	for n := range s.configMaps {
		names = append(names, n)
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, name := range names {
		wg.Go(func() {
			for ctx.Err() == nil {
				s.watchOnce(ctx, name)
				select {
				case <-ctx.Done():
				case <-time.After(500 * time.Millisecond):
				}
			}
		})
	}
	wg.Wait()
}

func (s *volumeSync) watchOnce(ctx context.Context, name string) {
	w, err := s.k8s.Watch(ctx, &corev1.ConfigMapList{}, client.InNamespace(s.namespace), client.MatchingFields{"metadata.name": name})
	if err != nil {
		return
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.ResultChan():
			if !ok {
				return
			}
			cm, isCM := ev.Object.(*corev1.ConfigMap)
			if !isCM {
				continue
			}
			switch ev.Type {
			case watch.Added, watch.Modified:
			case watch.Deleted:
				cm = &corev1.ConfigMap{}
			default:
				continue
			}
			if err := s.publishConfigMap(cm, name); err == nil {
				s.mu.Lock()
				s.updates[name]++
				s.mu.Unlock()
			}
		}
	}
}
