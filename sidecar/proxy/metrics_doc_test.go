package proxy

import (
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// operatorPages document the manager, whose metrics (gatehouse_operator_*,
// and the Redis health of a RedisCluster, gatehouse_redis_*) are the
// controllers' own.
var operatorPages = map[string]bool{"redis-cluster.md": true, "operator.md": true, "injection.md": true, "api.md": true, "demo.md": true, "e2e.md": true}

// recordingRegisterer notes the name of every metric registered through it.
type recordingRegisterer struct {
	prometheus.Registerer
	names map[string]bool
}

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

func (r *recordingRegisterer) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	for d := range ch {
		if m := fqName.FindStringSubmatch(d.String()); m != nil {
			r.names[m[1]] = true
		}
	}
	return r.Registerer.Register(c)
}

func (r *recordingRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

// TestEveryDocumentedMetricExists reads every sidecar metric name the docs
// mention and every metric a sidecar registers (all of them are registered
// once, when the process starts): each name the docs give must exist, and
// each metric must be a row of a metrics table, in docs/sidecar-metrics.md
// or the metrics section of its feature's page.
func TestEveryDocumentedMetricExists(t *testing.T) {
	rec := &recordingRegisterer{Registerer: prometheus.NewRegistry(), names: map[string]bool{}}
	u, _ := url.Parse("http://127.0.0.1:1")
	if _, err := New(Options{Upstream: u, ConfigPath: filepath.Join(t.TempDir(), "c.json"), Registerer: rec, Gatherer: prometheus.NewRegistry(),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), DrainTimeout: time.Second}); err != nil {
		t.Fatal(err)
	}
	if len(rec.names) < 20 {
		t.Fatalf("only %d metrics recorded: %v", len(rec.names), rec.names)
	}

	pages, err := filepath.Glob("../../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	// Families only: a series suffix names its histogram; a trailing "_" is
	// a prefix ("gatehouse_redis_*").
	mention := regexp.MustCompile("gatehouse_(?:sidecar|redis|session|ratelimit|cache)_[a-z0-9_]*[a-z0-9]")
	// The first cell of a metrics table row: one name or several.
	row := regexp.MustCompile("(?m)^\\| (`gatehouse_[^|]*)\\|")
	documented := map[string]bool{}
	for _, p := range pages {
		if operatorPages[filepath.Base(p)] {
			continue
		}
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		doc := string(raw)
		for _, m := range mention.FindAllString(doc, -1) {
			name := m
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if base, ok := strings.CutSuffix(m, suffix); ok && rec.names[base] {
					name = base
				}
			}
			if !rec.names[name] {
				t.Errorf("%s names %s, which the sidecar does not register", filepath.Base(p), m)
			}
		}
		for _, m := range row.FindAllStringSubmatch(doc, -1) {
			for _, n := range mention.FindAllString(m[1], -1) {
				documented[n] = true
			}
		}
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range rec.names {
			if !yield(n) {
				return
			}
		}
	})
	for _, n := range names {
		if !documented[n] {
			t.Errorf("%s is registered but no metrics table in docs/ lists it", n)
		}
	}
}
