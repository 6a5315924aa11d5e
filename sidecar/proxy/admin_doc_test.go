package proxy

import (
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/redistest"
)

// TestAdminRoutesAreAsDocumented sends every route docs/sidecar-admin-api.md
// lists to a sidecar with a session, a rate-limit and a cache policy in
// force: each is served (no not-found problem), routes no feature has are
// not, and without the policy of their feature the feature's routes are
// gone. The page used to say rate limits had routes "if any".
func TestAdminRoutesAreAsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/sidecar-admin-api.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `(GET|POST|DELETE|PUT|PATCH) (/[^`]*)` \\| ([^|]+) \\|")
	type route struct{ method, path, when string }
	var routes []route
	for _, m := range row.FindAllStringSubmatch(string(doc), -1) {
		routes = append(routes, route{m[1], strings.ReplaceAll(m[2], "{subject}", "alice"), m[3]})
	}
	if len(routes) != 9 {
		t.Fatalf("found %d routes in the table: %v", len(routes), routes)
	}

	srv := redistest.StartStandalone(t)
	a := newApp(t)
	redis := `"redis":[{"name":"main","mode":"Standalone","addrs":["` + srv.Addr() + `"]}]`
	all := redis + `,
		"sessions":[{"namespace":"ns","name":"s","redis":"main","ttl":"1m"}],
		"rateLimits":[{"namespace":"ns","name":"rl","redis":"main","rules":[{"name":"g","limit":100,"window":"1m"}]}],
		"caches":[{"namespace":"ns","name":"c","redis":"main","rules":[{"name":"all","ttl":"1m"}]}]`
	s := newSidecar(t, a.URL, cfgDoc("all", all)).start(t)
	eventually(t, "config loaded", func() bool { return s.p.watcher.Status().Hash == "all" })

	notFound := func(method, path string) (bool, int) {
		t.Helper()
		req, _ := http.NewRequest(method, s.admin+path, strings.NewReader("{}"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body [512]byte
		n, _ := resp.Body.Read(body[:])
		return resp.StatusCode == http.StatusNotFound && strings.Contains(string(body[:n]), "not-found"), resp.StatusCode
	}
	for _, r := range routes {
		if nf, code := notFound(r.method, r.path); nf {
			t.Errorf("%s %s (documented: %s) is not served: %d", r.method, r.path, strings.TrimSpace(r.when), code)
		}
	}
	for _, r := range []route{
		{"GET", "/v1/ratelimits", ""}, {"GET", "/v1/ratelimit", ""}, {"DELETE", "/v1/ratelimits/g", ""}, {"GET", "/v1/limits", ""},
		{"GET", "/v1/sessions", ""}, {"PUT", "/v1/sessions", ""}, {"GET", "/v1/cache/purge", ""}, {"GET", "/v1/", ""},
	} {
		if nf, code := notFound(r.method, r.path); !nf {
			t.Errorf("%s %s is not documented but answers %d", r.method, r.path, code)
		}
	}

	writeFile(t, s.cfgPath, cfgDoc("none", redis))
	eventually(t, "no policy", func() bool { return s.p.watcher.Status().Hash == "none" })
	for _, r := range routes {
		nf, _ := notFound(r.method, r.path)
		if always := strings.HasPrefix(r.when, "always"); nf == always {
			t.Errorf("without policies, %s %s: not found %v, documented %q", r.method, r.path, nf, strings.TrimSpace(r.when))
		}
	}
}
