// Command images builds the container images of the e2e cluster without a
// container engine or a registry, as one OCI image layout in a tar archive
// that `ctr -n k8s.io images import` loads into the cluster's containerd.
//
//	go run ./hack/e2e/images --out images.tar --coredns path/to/coredns
//
// Every image is one layer on nothing (like distroless "static"): the Go
// programs are built here with the Dockerfiles' flags (static, -trimpath,
// stripped); the Redis image is Debian's redis-server and redis-cli with the
// shared libraries ldd lists for them, plus busybox for the sh and grep its
// probes run. Layers carry fixed timestamps, so the same inputs give the same
// digests.
package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Image names. The kustomize overlays (config/e2e) and the cluster script
// (hack/e2e/cluster.sh) name the same images; the tag is never "latest", so
// the default pull policy is IfNotPresent and nothing is ever pulled.
const (
	Registry = "gatehouse.local"
	Tag      = "e2e"
)

// nonroot is distroless' nonroot user; numeric so runAsNonRoot can check it.
const nonroot = "65532:65532"

// redisUser is the official redis image's user, which the operator's
// StatefulSet runs as (runAsUser 999).
const redisUser = 999

// goImage is an image holding one Go program of this repository.
type goImage struct {
	name, pkg, entry, user string
}

var goImages = []goImage{
	{name: "gatehouse-manager", pkg: "./cmd/manager", entry: "/manager", user: nonroot},
	{name: "gatehouse-sidecar", pkg: "./cmd/sidecar", entry: "/gatehouse-sidecar", user: nonroot},
	{name: "storefront", pkg: "./hack/e2e/storefront", entry: "/storefront", user: nonroot},
	{name: "grpcapp", pkg: "./hack/e2e/grpcapp", entry: "/grpcapp", user: nonroot},
	{name: "e2e-client", pkg: "./hack/e2e/client", entry: "/e2e-client", user: nonroot},
	// The pod sandbox: blocks until signalled and reaps zombies.
	{name: "pause", pkg: "./hack/e2e/pause", entry: "/pause", user: nonroot},
}

func main() {
	out := flag.String("out", "images.tar", "OCI image layout archive to write")
	coredns := flag.String("coredns", "", "coredns binary for the cluster DNS image (hack/e2e/assets.sh builds it)")
	repo := flag.String("repo", ".", "repository root, where the Go programs are built")
	flag.Parse()
	if err := run(*out, *coredns, *repo); err != nil {
		fmt.Fprintln(os.Stderr, "images:", err)
		os.Exit(1)
	}
}

func run(out, coredns, repo string) error {
	if coredns == "" {
		return errors.New("--coredns is required")
	}
	tmp, err := os.MkdirTemp("", "gatehouse-e2e-images-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	bins, err := buildGo(repo, filepath.Join(tmp, "bin"))
	if err != nil {
		return err
	}
	dir := filepath.Join(tmp, "layout")
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("create image layout: %w", err)
	}
	add := func(name string, l *layer, cfg v1.Config) error {
		ref := Registry + "/" + name + ":" + Tag
		img, err := image(l, cfg)
		if err != nil {
			return fmt.Errorf("image %s: %w", ref, err)
		}
		// containerd names imported images by io.containerd.image.name;
		// org.opencontainers.image.ref.name is the layout's own tag.
		if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{
			"io.containerd.image.name":          ref,
			"org.opencontainers.image.ref.name": Tag,
		})); err != nil {
			return fmt.Errorf("write %s: %w", ref, err)
		}
		fmt.Println(ref)
		return nil
	}

	for _, gi := range goImages {
		l := base()
		if err := l.file(gi.entry, bins[path.Base(gi.pkg)]); err != nil {
			return err
		}
		if err := add(gi.name, l, v1.Config{
			Entrypoint: []string{gi.entry},
			User:       gi.user,
			Labels:     map[string]string{"org.opencontainers.image.title": gi.name, "org.opencontainers.image.source": gi.pkg},
		}); err != nil {
			return err
		}
	}

	// CoreDNS binds :53; its pod adds NET_BIND_SERVICE and runs as root,
	// every other capability dropped (hack/e2e/manifests/coredns.yaml).
	l := base()
	if err := l.file("/coredns", coredns); err != nil {
		return err
	}
	if err := add("coredns", l, v1.Config{Entrypoint: []string{"/coredns"}, Labels: map[string]string{"org.opencontainers.image.title": "coredns"}}); err != nil {
		return err
	}

	l, version, err := redisLayer()
	if err != nil {
		return err
	}
	if err := add("redis", l, v1.Config{
		Entrypoint: []string{"redis-server"},
		User:       fmt.Sprintf("%d:%d", redisUser, redisUser),
		WorkingDir: "/data",
		Env:        []string{"PATH=/usr/local/bin:/usr/bin:/bin"},
		Labels: map[string]string{
			"org.opencontainers.image.title":       "redis",
			"org.opencontainers.image.version":     version,
			"org.opencontainers.image.description": "Debian's redis-server and redis-cli with their shared libraries",
		},
	}); err != nil {
		return err
	}

	return writeTar(out, dir)
}

// buildGo builds every Go image's program in one go build and returns the
// binaries by package base name.
func buildGo(repo, dir string) (map[string]string, error) {
	args := make([]string, 0, 5+len(goImages))
	args = append(args, "build", "-trimpath", "-ldflags=-s -w", "-o", dir+"/")
	for _, gi := range goImages {
		args = append(args, gi.pkg)
	}
	cmd := exec.Command("go", args...)
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go %s: %w", strings.Join(args, " "), err)
	}
	bins := map[string]string{}
	for _, gi := range goImages {
		b := path.Base(gi.pkg)
		bins[b] = filepath.Join(dir, b)
	}
	return bins, nil
}

// image makes a single-layer OCI image for this machine's platform.
func image(l *layer, cfg v1.Config) (v1.Image, error) {
	data := l.bytes()
	lay, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.ConfigFile(img, &v1.ConfigFile{
		Architecture: runtime.GOARCH,
		OS:           "linux",
		Config:       cfg,
		RootFS:       v1.RootFS{Type: "layers"},
	})
	if err != nil {
		return nil, err
	}
	return mutate.AppendLayers(img, lay)
}

// redisLayer assembles Redis from the host's Debian packages and returns it
// with redis-server's version.
func redisLayer() (*layer, string, error) {
	server, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, "", fmt.Errorf("redis-server (hack/install-redis.sh installs it): %w", err)
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		return nil, "", fmt.Errorf("redis-cli: %w", err)
	}
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		return nil, "", fmt.Errorf("busybox (package busybox-static): %w", err)
	}
	if out, err := exec.Command("ldd", busybox).CombinedOutput(); err == nil || !strings.Contains(string(out), "not a dynamic executable") {
		return nil, "", fmt.Errorf("%s is not static (want Debian's busybox-static)", busybox)
	}
	out, err := exec.Command(server, "--version").Output()
	if err != nil {
		return nil, "", fmt.Errorf("redis-server --version: %w", err)
	}
	version := redisVersion(string(out))

	l := base()
	l.dir("/data", 0o755, redisUser, redisUser)
	l.dir("/etc/redis", 0o755, 0, 0)
	// Debian's redis-server is a symlink to redis-check-rdb, one binary that
	// picks its role from argv[0]: store it under the server's name.
	if err := l.file("/usr/bin/redis-server", server); err != nil {
		return nil, "", err
	}
	if err := l.file("/usr/bin/redis-cli", cli); err != nil {
		return nil, "", err
	}
	if err := l.file("/bin/busybox", busybox); err != nil {
		return nil, "", err
	}
	// The StatefulSet's probes run `sh -c "redis-cli … | grep -q PONG"`.
	for _, applet := range []string{"sh", "grep", "cat", "ls"} {
		l.symlink("/bin/"+applet, "busybox")
	}
	libs := map[string]bool{}
	for _, bin := range []string{server, cli} {
		out, err := exec.Command("ldd", bin).Output()
		if err != nil {
			return nil, "", fmt.Errorf("ldd %s: %w", bin, err)
		}
		for _, lib := range parseLDD(string(out)) {
			libs[lib] = true
		}
	}
	for _, lib := range slices.Sorted(maps.Keys(libs)) {
		if err := l.file(lib, lib); err != nil {
			return nil, "", err
		}
	}
	return l, version, nil
}

// parseLDD returns the files ldd says a binary loads: the libraries it
// resolved and the dynamic loader; the kernel's vDSO is no file.
func parseLDD(out string) []string {
	var files []string
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		switch {
		case len(f) >= 3 && f[1] == "=>" && strings.HasPrefix(f[2], "/"):
			files = append(files, f[2])
		case len(f) >= 1 && strings.HasPrefix(f[0], "/"):
			files = append(files, f[0])
		}
	}
	return files
}

// redisVersion reads "Redis server v=7.0.15 sha=…" as 7.0.15.
func redisVersion(out string) string {
	for f := range strings.FieldsSeq(out) {
		if v, ok := strings.CutPrefix(f, "v="); ok {
			return v
		}
	}
	return "unknown"
}

// layer is an image layer's tar, written in memory with fixed timestamps and
// ownership, parent directories first.
type layer struct {
	buf  bytes.Buffer
	tw   *tar.Writer
	dirs map[string]bool
}

var epoch = time.Unix(0, 0)

// base is the file system every image starts from, as in distroless
// "static": the root and nonroot users, and a world-writable /tmp.
func base() *layer {
	l := &layer{dirs: map[string]bool{"/": true}}
	l.tw = tar.NewWriter(&l.buf)
	l.dir("/tmp", 0o1777, 0, 0)
	l.data("/etc/passwd", "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\nredis:x:999:999:redis:/data:/sbin/nologin\n", 0o644)
	l.data("/etc/group", "root:x:0:\nnonroot:x:65532:\nredis:x:999:\n", 0o644)
	return l
}

func (l *layer) parents(p string) {
	d := path.Dir(p)
	if l.dirs[d] {
		return
	}
	l.dir(d, 0o755, 0, 0)
}

func (l *layer) dir(p string, mode int64, uid, gid int) {
	l.parents(p)
	l.dirs[p] = true
	l.header(&tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(p, "/") + "/", Mode: mode, Uid: uid, Gid: gid})
}

func (l *layer) symlink(p, target string) {
	l.parents(p)
	l.header(&tar.Header{Typeflag: tar.TypeSymlink, Name: strings.TrimPrefix(p, "/"), Linkname: target, Mode: 0o777})
}

func (l *layer) data(p, content string, mode int64) {
	l.parents(p)
	l.header(&tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(p, "/"), Mode: mode, Size: int64(len(content))})
	_, _ = l.tw.Write([]byte(content)) // a bytes.Buffer does not fail
}

// file copies the host file src (following symlinks) to p, owned by root
// and executable: every host file an image carries is a program or a
// shared library.
func (l *layer) file(p, src string) error {
	content, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("read %s for %s: %w", src, p, err)
	}
	l.parents(p)
	l.header(&tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(p, "/"), Mode: 0o755, Size: int64(len(content))})
	_, _ = l.tw.Write(content)
	return nil
}

func (l *layer) header(h *tar.Header) {
	h.ModTime = epoch
	h.Format = tar.FormatPAX
	_ = l.tw.WriteHeader(h) // a bytes.Buffer does not fail; names are short
}

func (l *layer) bytes() []byte {
	_ = l.tw.Close()
	return l.buf.Bytes()
}

// writeTar archives the layout directory: ctr imports an OCI layout as a tar.
func writeTar(out, dir string) error {
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	err = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		h, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		h.Name = filepath.ToSlash(rel)
		if d.IsDir() {
			h.Name += "/"
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		src, err := os.Open(p)
		if err != nil {
			return err
		}
		defer src.Close()
		_, err = io.Copy(tw, src)
		return err
	})
	if cerr := tw.Close(); err == nil {
		err = cerr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", out, err)
	}
	return nil
}
