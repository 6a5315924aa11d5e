package reload

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gatehouse-dev/gatehouse/sidecar/config"
)

func doc(hash string) string {
	return fmt.Sprintf(`{"apiVersion":%q,"kind":%q,"hash":%q}`, config.APIVersion, config.Kind, hash)
}

const brokenDoc = `{"apiVersion":"sidecar.gatehouse.dev/v1alpha1","kind":"SidecarConfig","redis":[{"name":"r"}]}`

// configMapDir lays out a directory the way the kubelet's atomic writer does
// for a ConfigMap volume: config.json -> ..data/config.json, ..data -> ..<ts>.
type configMapDir struct {
	t   *testing.T
	dir string
	n   int
}

func newConfigMapDir(t *testing.T, content string) *configMapDir {
	d := &configMapDir{t: t, dir: t.TempDir()}
	d.swap(content)
	if err := os.Symlink(filepath.Join("..data", "config.json"), filepath.Join(d.dir, "config.json")); err != nil {
		t.Fatal(err)
	}
	return d
}

// swap publishes content in a new timestamped directory and atomically
// re-points ..data at it, then removes the old directory, as the kubelet does.
func (d *configMapDir) swap(content string) {
	d.t.Helper()
	d.n++
	ts := fmt.Sprintf("..2026_11_26_00_00_%02d.%d", d.n, d.n)
	if err := os.Mkdir(filepath.Join(d.dir, ts), 0o755); err != nil {
		d.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d.dir, ts, "config.json"), []byte(content), 0o644); err != nil {
		d.t.Fatal(err)
	}
	tmp := filepath.Join(d.dir, "..data_tmp")
	if err := os.Symlink(ts, tmp); err != nil {
		d.t.Fatal(err)
	}
	old, _ := os.Readlink(filepath.Join(d.dir, "..data"))
	if err := os.Rename(tmp, filepath.Join(d.dir, "..data")); err != nil {
		d.t.Fatal(err)
	}
	if old != "" {
		if err := os.RemoveAll(filepath.Join(d.dir, old)); err != nil {
			d.t.Fatal(err)
		}
	}
}

func (d *configMapDir) path() string { return filepath.Join(d.dir, "config.json") }

type applied struct {
	mu     sync.Mutex
	hashes []string
	refuse string // a hash apply refuses
}

func (a *applied) apply(c *config.Config) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.refuse != "" && c.Hash == a.refuse {
		return errors.New("refused by apply")
	}
	a.hashes = append(a.hashes, c.Hash)
	return nil
}

func (a *applied) last() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.hashes) == 0 {
		return ""
	}
	return a.hashes[len(a.hashes)-1]
}

func startWatcher(t *testing.T, path string, a *applied) (*Watcher, *Metrics) {
	t.Helper()
	w, m := startWatcherAllowingFailure(t, path, a)
	if st := w.Status(); !st.Loaded {
		t.Fatalf("initial Reload: %s", st.LastError)
	}
	return w, m
}

// startWatcherAllowingFailure starts a watcher whose initial load may fail,
// as Proxy.Run does.
func startWatcherAllowingFailure(t *testing.T, path string, a *applied) (*Watcher, *Metrics) {
	t.Helper()
	m := NewMetrics(prometheus.NewRegistry())
	w := NewWatcher(path, a.apply, m, slog.New(slog.NewTextHandler(io.Discard, nil)))
	_ = w.Reload()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return w, m
}

// eventually polls cond with a generous deadline; file events are
// asynchronous, so the test waits for the outcome instead of sleeping.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestWatcherConfigMapSymlinkSwap(t *testing.T) {
	d := newConfigMapDir(t, doc("one"))
	a := &applied{refuse: "refused"}
	w, m := startWatcher(t, d.path(), a)
	if got := a.last(); got != "one" {
		t.Fatalf("initial config hash = %q, want one", got)
	}

	d.swap(doc("two"))
	eventually(t, "config two applied", func() bool { return a.last() == "two" })
	st := w.Status()
	if st.Generation != 2 || st.Hash != "two" || st.LastError != "" || !st.Loaded {
		t.Errorf("status after good swap = %+v", st)
	}
	if got := testutil.ToFloat64(m.lastSuccessful); got != 1 {
		t.Errorf("last_reload_successful = %v, want 1", got)
	}

	// A broken file keeps config two and is reported.
	d.swap(brokenDoc)
	eventually(t, "broken config reported", func() bool { return w.Status().LastError != "" })
	st = w.Status()
	if !strings.Contains(st.LastError, "redis[0].mode: required") || st.Generation != 2 || st.Hash != "two" {
		t.Errorf("status after broken swap = %+v", st)
	}
	if got := a.last(); got != "two" {
		t.Errorf("broken config reached apply: last = %q", got)
	}
	if got := testutil.ToFloat64(m.lastSuccessful); got != 0 {
		t.Errorf("last_reload_successful = %v, want 0", got)
	}
	if got := testutil.ToFloat64(m.reloads.WithLabelValues("failure")); got != 1 {
		t.Errorf("reloads_total{result=failure} = %v, want 1", got)
	}

	// A config apply refuses is a failure too.
	d.swap(doc("refused"))
	eventually(t, "refused config reported", func() bool {
		return strings.Contains(w.Status().LastError, "refused by apply")
	})

	// Fixing the file recovers.
	d.swap(doc("three"))
	eventually(t, "config three applied", func() bool { return a.last() == "three" })
	st = w.Status()
	if st.Generation != 3 || st.LastError != "" {
		t.Errorf("status after fix = %+v", st)
	}
	if got := testutil.ToFloat64(m.info.WithLabelValues("three", st.SHA256)); got != 1 {
		t.Errorf("config_info{hash=three} = %v, want 1", got)
	}
	if got := testutil.CollectAndCount(m.info); got != 1 {
		t.Errorf("config_info has %d series, want exactly the one in force", got)
	}
	if got := testutil.ToFloat64(m.reloads.WithLabelValues("success")); got != 3 {
		t.Errorf("reloads_total{result=success} = %v, want 3", got)
	}
}

func TestWatcherEditorRenameOver(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.json")
	if err := os.WriteFile(path, []byte(doc("one")), 0o644); err != nil {
		t.Fatal(err)
	}
	a := &applied{}
	_, _ = startWatcher(t, path, a)

	// Editors and config-management tools write a temporary file and rename it
	// over the original, replacing the inode a file watch would follow.
	tmp := filepath.Join(dir, ".config.json.swp")
	if err := os.WriteFile(tmp, []byte(doc("two")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	eventually(t, "renamed-over config applied", func() bool { return a.last() == "two" })

	// And an in-place write is seen too.
	if err := os.WriteFile(path, []byte(doc("three")), 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, "rewritten config applied", func() bool { return a.last() == "three" })
}

func TestWatcherInitialFailure(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(path, []byte(brokenDoc), 0o644); err != nil {
		t.Fatal(err)
	}
	a := &applied{}
	w := NewWatcher(path, a.apply, NewMetrics(prometheus.NewRegistry()), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := w.Reload(); err == nil {
		t.Fatal("Reload of a broken file succeeded")
	}
	if st := w.Status(); st.Loaded || st.LastError == "" {
		t.Errorf("status = %+v, want not loaded with an error", st)
	}
}

// A pod can start before the operator has rendered its namespace (the
// namespace and its policies applied together, or the operator down): the
// ConfigMap volume is then empty. That must not read as "no policy in
// force", or protected routes would be served unprotected until the file
// appears. The watcher applies nothing and reports the missing file, then
// loads the file when the kubelet projects it.
func TestWatcherMissingFileFailsClosed(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.json")
	a := &applied{}
	w, m := startWatcherAllowingFailure(t, path, a)
	st := w.Status()
	if st.Loaded || len(a.hashes) != 0 || !strings.Contains(st.LastError, "does not exist") {
		t.Fatalf("after start without a file: status %+v, applied %q; want nothing in force and the missing file reported", st, a.hashes)
	}
	if got := testutil.ToFloat64(m.lastSuccessful); got != 0 {
		t.Errorf("last_reload_successful = %v, want 0", got)
	}
	if !errors.Is(w.Reload(), ErrNoFile) {
		t.Error("Reload without a file: want ErrNoFile")
	}

	if err := os.WriteFile(path, []byte(doc("h1")), 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the new file applied", func() bool { return a.last() == "h1" })
	if st := w.Status(); !st.Loaded || st.LastError != "" {
		t.Errorf("after the file appeared: status %+v", st)
	}
}

// The explicit empty document is how the operator says "no policy in
// force"; it loads like any other.
func TestWatcherEmptyDocumentLoads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(path, []byte(doc("")), 0o644); err != nil {
		t.Fatal(err)
	}
	a := &applied{}
	w, _ := startWatcher(t, path, a)
	if st := w.Status(); !st.Loaded || len(a.hashes) != 1 {
		t.Errorf("status %+v, applied %q: want the empty document in force", st, a.hashes)
	}
}

// A file that disappears after a good load (the ConfigMap deleted by hand,
// until the operator restores it) keeps the last good config in force.
func TestWatcherFileRemovedKeepsLastGood(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(path, []byte(doc("h1")), 0o644); err != nil {
		t.Fatal(err)
	}
	a := &applied{}
	w, _ := startWatcher(t, path, a)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the removal reported", func() bool { return w.Status().LastError != "" })
	st := w.Status()
	if !st.Loaded || st.Hash != "h1" || len(a.hashes) != 1 || !strings.Contains(st.LastError, "does not exist") {
		t.Errorf("after removal: status %+v, applied %q; want h1 still in force and the removal reported", st, a.hashes)
	}
	if err := os.WriteFile(path, []byte(doc("h2")), 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the restored file applied", func() bool { return a.last() == "h2" })
}
