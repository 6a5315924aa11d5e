// Package reload is the sidecar's hot reload: it watches the configuration
// file (and any other mounted file, such as the pod labels) the way a
// Kubernetes volume changes, hands each valid configuration to the runtime,
// and reports the configuration in force and the last attempt as a status
// and as metrics. The document itself, and what makes it valid, is
// sidecar/config's.
package reload

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/gatehouse-dev/gatehouse/sidecar/config"
)

// Metrics reports config reloads. Create it once per process: watchers and
// reloads share it, so hot reload never registers a collector twice.
type Metrics struct {
	lastSuccessful prometheus.Gauge
	lastSuccessAt  prometheus.Gauge
	reloads        *prometheus.CounterVec
	generation     prometheus.Gauge
	info           *prometheus.GaugeVec
}

// NewMetrics registers the config metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	return &Metrics{
		lastSuccessful: f.NewGauge(prometheus.GaugeOpts{
			Name: "gatehouse_sidecar_config_last_reload_successful",
			Help: "1 if the last attempt to load the config file succeeded, 0 if it failed and the previous config is still in force.",
		}),
		lastSuccessAt: f.NewGauge(prometheus.GaugeOpts{
			Name: "gatehouse_sidecar_config_last_reload_success_timestamp_seconds",
			Help: "Unix time of the last successful config load.",
		}),
		reloads: f.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_sidecar_config_reloads_total",
			Help: "Config load attempts by result (success, failure).",
		}, []string{"result"}),
		generation: f.NewGauge(prometheus.GaugeOpts{
			Name: "gatehouse_sidecar_config_generation",
			Help: "Number of configs applied since start; increases on every successful reload.",
		}),
		info: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gatehouse_sidecar_config_info",
			Help: "Always 1; labels identify the config in force: the operator's hash and the sha256 of the file.",
		}, []string{"hash", "sha256"}),
	}
}

// Status describes the config in force and the last load attempt.
type Status struct {
	// Loaded is true once a config has been applied.
	Loaded bool `json:"loaded"`
	// Generation counts successful loads.
	Generation uint64 `json:"generation"`
	// Hash is the operator's hash of the config in force.
	Hash string `json:"hash,omitempty"`
	// SHA256 is the digest (first 16 hex digits) of the file in force.
	SHA256 string `json:"sha256,omitempty"`
	// LastError is why the last attempt failed; empty when it succeeded.
	LastError string `json:"lastError,omitempty"`
	// LastAttempt and LastSuccess are when the file was last read and last applied.
	LastAttempt time.Time `json:"lastAttempt,omitzero"`
	LastSuccess time.Time `json:"lastSuccess,omitzero"`
}

// Watcher loads the config file and reloads it when it changes, handing
// only valid configs to apply. A file that fails to parse or validate, or
// that apply refuses, leaves the previous config in force and is reported
// through Status, the metrics and the log.
type Watcher struct {
	path  string
	apply func(*config.Config) error
	m     *Metrics
	log   *slog.Logger

	mu        sync.Mutex // serialises loads and guards the fields below
	attempted bool
	// missing is true when the last attempt found no file.
	missing bool
	lastSum [sha256.Size]byte
	status  Status
}

// NewWatcher returns a watcher of the file at path. apply is called with
// each valid config, one call at a time; it returns an error to refuse one
// (for example when building the handlers for it fails).
func NewWatcher(path string, apply func(*config.Config) error, m *Metrics, log *slog.Logger) *Watcher {
	return &Watcher{path: path, apply: apply, m: m, log: log}
}

// Status returns a snapshot of the watcher's state.
func (w *Watcher) Status() Status {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.status
}

// Reload loads the file now, whether or not it changed.
func (w *Watcher) Reload() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.load(true)
}

// Run reloads the file whenever it changes until ctx is done. Call Reload
// first for the initial load; Run also catches a change made in between.
func (w *Watcher) Run(ctx context.Context) error {
	return WatchFile(ctx, w.path, w.log, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		_ = w.load(false) // recorded in status and metrics, logged by load
	})
}

// ErrNoFile is the load error while the configuration file does not exist.
var ErrNoFile = errors.New("the configuration file does not exist (yet): the operator renders one for every namespace with injected pods; " +
	"until a sidecar has loaded one it answers 503 and is not ready")

// load reads and applies the file; unless force is set, content identical to
// the last attempt is ignored, because directory events arrive for many
// reasons (chmod, the ConfigMap's temporary directories) that change nothing.
//
// A missing file is not a configuration: "no policy in force" is an
// explicit document without policies, which the operator renders for every
// namespace with injected pods. A sidecar that starts before the operator
// has rendered its namespace (the namespace and its policies created
// together, or the operator down) must not serve protected routes
// unprotected meanwhile, so it fails closed, as a mesh sidecar without its
// configuration does. A file that disappears later keeps the last good
// configuration in force, like any other unusable file.
func (w *Watcher) load(force bool) error {
	data, err := os.ReadFile(w.path)
	missing := errors.Is(err, fs.ErrNotExist)
	switch {
	case missing:
		if !force && w.attempted && w.missing {
			return nil
		}
		w.attempted, w.missing, w.lastSum = true, true, [sha256.Size]byte{}
		err = ErrNoFile
	case err == nil:
		sum := sha256.Sum256(data)
		if !force && w.attempted && !w.missing && sum == w.lastSum {
			return nil
		}
		w.attempted, w.missing, w.lastSum = true, false, sum
	}
	now := time.Now()
	w.status.LastAttempt = now
	var c *config.Config
	if err == nil {
		c, err = config.Decode(data)
	}
	if err == nil {
		if aerr := w.apply(c); aerr != nil {
			err = fmt.Errorf("apply config: %w", aerr)
		}
	}
	if err != nil {
		err = fmt.Errorf("load config %s: %w", w.path, err)
		w.status.LastError = err.Error()
		w.m.lastSuccessful.Set(0)
		w.m.reloads.WithLabelValues("failure").Inc()
		if w.status.Loaded {
			w.log.Error("Config rejected; the previous config stays in force", "error", err, "generation", w.status.Generation)
		} else {
			w.log.Error("No config loaded; answering 503 and not ready until one loads", "error", err)
		}
		return err
	}
	sum := hex.EncodeToString(w.lastSum[:8])
	w.status.Loaded = true
	w.status.Generation++
	w.status.Hash = c.Hash
	w.status.SHA256 = sum
	w.status.LastError = ""
	w.status.LastSuccess = now
	w.m.lastSuccessful.Set(1)
	w.m.lastSuccessAt.Set(float64(now.Unix()))
	w.m.reloads.WithLabelValues("success").Inc()
	w.m.generation.Set(float64(w.status.Generation))
	w.m.info.Reset()
	w.m.info.WithLabelValues(c.Hash, sum).Set(1)
	w.log.Info("Config loaded", "generation", w.status.Generation, "hash", c.Hash, "sha256", sum)
	return nil
}

// debounce lets a burst of events (an editor's write-rename-chmod, the
// ConfigMap's tmp dir + symlink swap + cleanup) settle into one reload.
const debounce = 100 * time.Millisecond

// WatchFile calls changed whenever the file at path may have changed, until
// ctx is done. It also calls changed once after the watch is in place, so a
// change between the caller's initial read and the watch is not lost.
//
// It watches the directory, not the file: a Kubernetes ConfigMap or
// downward-API volume updates by swapping the "..data" symlink to a new
// directory, and editors replace a file by renaming another over it; in both
// cases a watch on the file itself would follow the old inode and go quiet.
func WatchFile(ctx context.Context, path string, log *slog.Logger, changed func()) error {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch %s: %w", path, err)
	}
	defer fw.Close()
	dir, base := filepath.Dir(path), filepath.Base(path)
	if err := fw.Add(dir); err != nil {
		return fmt.Errorf("watch %s: %w", dir, err)
	}
	changed()

	timer := time.NewTimer(debounce)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-fw.Events:
			if !ok {
				return errors.New("watch " + dir + ": event channel closed")
			}
			if name := filepath.Base(ev.Name); name == base || name == "..data" {
				timer.Reset(debounce)
			}
		case err, ok := <-fw.Errors:
			if !ok {
				return errors.New("watch " + dir + ": error channel closed")
			}
			// Overflowed queues lose events, not the watch: reload to be safe.
			log.Warn("File watch error; re-reading the file", "path", path, "error", err)
			timer.Reset(debounce)
		case <-timer.C:
			changed()
		}
	}
}
