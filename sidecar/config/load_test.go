package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseStrict(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want []string // problems; nil means it parses
	}{
		{
			name: "minimal",
			doc:  `{"apiVersion":"sidecar.gatehouse.dev/v1alpha1","kind":"SidecarConfig"}`,
		},
		{
			name: "unknown fields at every depth with their paths",
			doc: `{"apiVersion":"x","kind":"y","colour":1,
				"redis":[{"name":"a","mode":"Standalone","addrs":["h:1"],"pasword":"x"}],
				"sessions":[{"namespace":"n","name":"s","redis":"a","ttl":"1s","token":{"heder":"A"},"selector":{"matchLabels":{"a":"b"},"matchExpressions":[{"key":"k","operator":"In","value":["x"]}]}}],
				"rateLimits":[{"namespace":"n","name":"r","redis":"a","rules":[{"name":"x"},{"name":"y","windw":"1s"}]}]}`,
			want: []string{
				`colour: unknown field`,
				`rateLimits[0].rules[1].windw: unknown field`,
				`redis[0].pasword: unknown field`,
				`sessions[0].selector.matchExpressions[0].value: unknown field`,
				`sessions[0].token.heder: unknown field`,
			},
		},
		{
			name: "keys differing only in case are unknown",
			doc:  `{"APIVersion":"x","kind":"y"}`,
			want: []string{`APIVersion: unknown field`},
		},
		{
			name: "wrong types and bad durations",
			doc: `{"apiVersion":1,"kind":"k","proxy":{"trustedProxies":"10.0.0.0/8"},
				"redis":[{"name":"a","addrs":["h:1"],"poolSize":1.5,"db":"2","dialTimeout":5,"readTimeout":"5 sec","tls":true}],
				"sessions":[{"sliding":"yes","selector":{"matchLabels":{"a":1}}}]}`,
			want: []string{
				`apiVersion: must be a string`,
				`proxy.trustedProxies: must be an array`,
				`redis[0].db: must be an integer`,
				`redis[0].dialTimeout: must be a duration string such as "30s"`,
				`redis[0].poolSize: must be an integer`,
				`redis[0].readTimeout: invalid duration "5 sec"`,
				`redis[0].tls: must be an object`,
				`sessions[0].selector.matchLabels.a: must be a string`,
				`sessions[0].sliding: must be true or false`,
			},
		},
		{
			name: "null is the zero value",
			doc:  `{"apiVersion":"a","kind":"b","redis":null,"proxy":{"trustedProxies":null}}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.doc))
			if diff := cmp.Diff(tt.want, Problems(err)); diff != "" {
				t.Errorf("Parse problems (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseRejectsMalformed(t *testing.T) {
	for name, doc := range map[string]string{
		"syntax":        `{"apiVersion":`,
		"trailing data": `{"apiVersion":"a"} {"kind":"b"}`,
		"not an object": `["a"]`,
		"empty":         ``,
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Parse([]byte(doc)); err == nil {
				t.Errorf("Parse(%q) succeeded, want an error", doc)
			}
		})
	}
}

func TestParseDecodesValues(t *testing.T) {
	c, err := Parse([]byte(`{"apiVersion":"a","kind":"b","redis":[{"name":"r","mode":"Cluster","addrs":["h:1"],"readTimeout":"1500ms","maxRetries":-1}],
		"sessions":[{"namespace":"n","name":"s","redis":"r","ttl":"2s","sliding":true,"selector":{"matchLabels":{"app":"web"}}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		APIVersion: "a", Kind: "b",
		Redis: []RedisConnection{{Name: "r", Mode: RedisCluster, Addrs: []string{"h:1"}, ReadTimeout: Duration(1500 * time.Millisecond), MaxRetries: -1}},
		Sessions: []SessionPolicy{{
			PolicyMeta: PolicyMeta{Namespace: "n", Name: "s", Redis: "r", Selector: Selector{MatchLabels: map[string]string{"app": "web"}}},
			TTL:        Duration(2 * time.Second), Sliding: true,
		}},
	}
	if diff := cmp.Diff(want, c); diff != "" {
		t.Errorf("Parse (-want +got):\n%s", diff)
	}
}

func TestLoadReportsEveryProblemWithFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.json")
	doc := `{"apiVersion":"sidecar.gatehouse.dev/v1alpha1","kind":"SidecarConfig",
		"rateLimits":[{"namespace":"n","name":"r","redis":"missing","rules":[{"name":"a","limit":1,"window":"1s"}]},
			{"namespace":"n","name":"r","redis":"","rules":[{"name":"a","limit":1,"window":"1s"}]}]}`
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	want := []string{
		`rateLimits[0].redis: unknown redis connection "missing"`,
		`rateLimits[1].name: duplicate policy "n/r"`,
		`rateLimits[1].redis: required: the name of a redis connection`,
	}
	if diff := cmp.Diff(want, Problems(err)); diff != "" {
		t.Errorf("Load problems (-want +got):\n%s", diff)
	}
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("Load error %v does not name the file", err)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "absent.json")); err == nil {
		t.Error("Load of a missing file succeeded")
	}
}

// extractJSONBlock returns the ```json fenced block that follows marker in doc.
func extractJSONBlock(t *testing.T, doc, marker string) string {
	t.Helper()
	_, after, ok := strings.Cut(doc, marker)
	if !ok {
		t.Fatalf("marker %q not found", marker)
	}
	_, after, ok = strings.Cut(after, "```json\n")
	if !ok {
		t.Fatalf("no ```json block after %q", marker)
	}
	block, _, ok := strings.Cut(after, "```")
	if !ok {
		t.Fatalf("unterminated block after %q", marker)
	}
	return block
}
