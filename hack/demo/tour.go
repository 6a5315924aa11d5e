package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gatehouse-dev/gatehouse/api/v1alpha1"
	"github.com/gatehouse-dev/gatehouse/controllers"
	"github.com/gatehouse-dev/gatehouse/hack/demo/app"
	"github.com/gatehouse-dev/gatehouse/sidecar/proxy"
)

var httpClient = &http.Client{
	Timeout: 10 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
}

// response is a finished HTTP exchange.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (d *demo) do(ctx context.Context, method, path string, body any, header map[string]string) (response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return response{}, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, d.dataURL+path, rd)
	if err != nil {
		return response{}, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return response{}, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return response{}, fmt.Errorf("%s %s: read body: %w", method, path, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: data}, nil
}

// show prints a request and the interesting parts of its answer.
func (d *demo) show(method, path string, r response, headers ...string) {
	var hs []string
	for _, h := range headers {
		if v := r.header.Get(h); v != "" {
			hs = append(hs, h+": "+v)
		}
	}
	line := fmt.Sprintf("%s %s → %d", method, path, r.status)
	if len(hs) > 0 {
		line += "  [" + strings.Join(hs, "; ") + "]"
	}
	d.out.say("%s", line)
	if b := bytes.TrimSpace(r.body); len(b) > 0 {
		if len(b) > 220 {
			b = append(b[:220:220], "…"...)
		}
		d.out.say("    %s", b)
	}
}

func expectStatus(r response, want int) error {
	if r.status != want {
		return fmt.Errorf("got status %d, want %d; body: %s", r.status, want, bytes.TrimSpace(r.body))
	}
	return nil
}

// readiness reads the sidecar's /readyz where the readiness probe does.
func (d *demo) readiness(ctx context.Context) (proxy.Readiness, error) {
	var rd proxy.Readiness
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.readyURL, nil)
	if err != nil {
		return rd, err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return rd, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&rd); err != nil {
		return rd, fmt.Errorf("decode /readyz: %w", err)
	}
	return rd, nil
}

// waitConfigInForce waits until the ConfigMap's hash differs from before
// and the sidecar serves with it, and reports how long that took.
func (d *demo) waitConfigInForce(ctx context.Context, before string) (string, time.Duration, error) {
	start := time.Now()
	var hash string
	err := poll(ctx, 30*time.Second, func() error {
		var cm corev1.ConfigMap
		if err := d.k8s.Get(ctx, client.ObjectKey{Namespace: shopNamespace, Name: controllers.SidecarConfigMapName}, &cm); err != nil {
			return err
		}
		hash = cm.Annotations[controllers.AnnotationConfigHash]
		if hash == before {
			return fmt.Errorf("ConfigMap not re-rendered yet (hash %s)", hash)
		}
		rd, err := d.readiness(ctx)
		if err != nil {
			return err
		}
		if rd.Config.Hash != hash {
			return fmt.Errorf("sidecar still serves config %s, ConfigMap has %s (last error %q)", rd.Config.Hash, hash, rd.Config.LastError)
		}
		return nil
	})
	return hash, time.Since(start), err
}

func (d *demo) configHash(ctx context.Context) (string, error) {
	rd, err := d.readiness(ctx)
	return rd.Config.Hash, err
}

// perIPLimit reads the per-ip rule's limit from the RateLimitPolicy.
func (d *demo) perIPLimit(ctx context.Context) (int64, error) {
	var p v1alpha1.RateLimitPolicy
	if err := d.k8s.Get(ctx, client.ObjectKey{Namespace: shopNamespace, Name: rateLimitName}, &p); err != nil {
		return 0, err
	}
	if len(p.Spec.Rules) == 0 || p.Spec.Rules[0].Name != "per-ip" {
		return 0, fmt.Errorf("RateLimitPolicy %s: first rule is not per-ip", rateLimitName)
	}
	return p.Spec.Rules[0].Limit, nil
}

// tour is the scripted walk through the features, with real requests.
func (d *demo) tour(ctx context.Context) error {
	auth := func() map[string]string { return map[string]string{"Authorization": "Bearer " + d.token} }

	d.out.begin("Sessions: a protected route without a session")
	r, err := d.do(ctx, "GET", "/api/cart", nil, nil)
	if err != nil {
		return err
	}
	d.show("GET", "/api/cart", r, "Content-Type")
	if err := expectStatus(r, http.StatusUnauthorized); err != nil {
		return err
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
		return fmt.Errorf("401 Content-Type %q, want application/problem+json", ct)
	}
	r, err = d.do(ctx, "GET", "/api/cart", nil, map[string]string{"X-Gatehouse-Subject": "mallory@example.com"})
	if err != nil {
		return err
	}
	d.show("GET", "/api/cart (forged X-Gatehouse-Subject: mallory@example.com)", r)
	if err := expectStatus(r, http.StatusUnauthorized); err != nil {
		return err
	}
	d.out.ok("401 problem+json; a forged identity header does not help")

	d.out.begin("Sessions: log in (the app asks the sidecar's admin API POST /v1/sessions for a token)")
	r, err = d.do(ctx, "POST", "/login", map[string]string{"user": "alice", "password": "wonderland"}, nil)
	if err != nil {
		return err
	}
	d.show("POST", "/login {\"user\":\"alice\",\"password\":\"wonderland\"}", r)
	if err := expectStatus(r, http.StatusOK); err != nil {
		return err
	}
	var sess struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(r.body, &sess); err != nil || sess.Token == "" {
		return fmt.Errorf("login answered no token: %s", r.body)
	}
	d.token = sess.Token
	d.out.ok("token issued: %s…", d.token[:min(12, len(d.token))])

	d.out.begin("Sessions: the same route with the token; the app sees the subject the sidecar forwards")
	r, err = d.do(ctx, "GET", "/api/cart", nil, auth())
	if err != nil {
		return err
	}
	d.show("GET", "/api/cart (Authorization: Bearer …)", r, "RateLimit-Policy", "RateLimit")
	if err := expectStatus(r, http.StatusOK); err != nil {
		return err
	}
	var cart struct {
		Subject string `json:"subject"`
		Tier    string `json:"tier"`
	}
	if err := json.Unmarshal(r.body, &cart); err != nil {
		return fmt.Errorf("cart body: %w", err)
	}
	if cart.Subject != "alice@example.com" || cart.Tier != "gold" {
		return fmt.Errorf("app saw subject %q tier %q, want alice@example.com gold", cart.Subject, cart.Tier)
	}
	d.out.ok("200; the app read X-Gatehouse-Subject=%s and X-Gatehouse-Claim-Tier=%s", cart.Subject, cart.Tier)

	if err := d.rateLimitTour(ctx, auth); err != nil {
		return err
	}
	return d.cacheTour(ctx)
}

func (d *demo) rateLimitTour(ctx context.Context, auth func() map[string]string) error {
	const small = 5
	d.out.begin(fmt.Sprintf("Rate limits: lower the per-IP limit to %d/min through the API; the sidecar reloads", small))
	before, err := d.configHash(ctx)
	if err != nil {
		return err
	}
	old, err := d.perIPLimit(ctx)
	if err != nil {
		return err
	}
	patch := fmt.Sprintf(`[{"op":"test","path":"/spec/rules/0/name","value":"per-ip"},{"op":"replace","path":"/spec/rules/0/limit","value":%d}]`, small)
	p := &v1alpha1.RateLimitPolicy{}
	p.Namespace, p.Name = shopNamespace, rateLimitName
	if err := d.k8s.Patch(ctx, p, client.RawPatch(types.JSONPatchType, []byte(patch))); err != nil {
		return fmt.Errorf("patch RateLimitPolicy: %w", err)
	}
	d.out.say("PATCH ratelimitpolicies/%s %s", rateLimitName, patch)
	hash, took, err := d.waitConfigInForce(ctx, before)
	if err != nil {
		return err
	}
	d.out.ok("per-ip limit %d → %d: ConfigMap re-rendered and the sidecar serves config %s %s after the patch", old, small, hash, took.Round(10*time.Millisecond))

	d.out.begin("Rate limits: call until the limit answers 429 with Retry-After")
	got429 := false
	for i := 1; i <= 2*small+2; i++ {
		r, err := d.do(ctx, "GET", "/api/cart", nil, auth())
		if err != nil {
			return err
		}
		if r.status == http.StatusOK {
			d.out.say("GET /api/cart #%d → 200  [RateLimit: %s]", i, r.header.Get("RateLimit"))
			continue
		}
		d.show("GET", fmt.Sprintf("/api/cart #%d", i), r, "Retry-After", "RateLimit-Policy", "RateLimit", "Content-Type")
		if err := expectStatus(r, http.StatusTooManyRequests); err != nil {
			return err
		}
		ra, err := strconv.Atoi(r.header.Get("Retry-After"))
		if err != nil || ra < 1 {
			return fmt.Errorf("429 without a positive Retry-After: %q", r.header.Get("Retry-After"))
		}
		got429 = true
		break
	}
	if !got429 {
		return fmt.Errorf("no 429 within %d requests at a limit of %d", 2*small+2, small)
	}
	d.out.ok("429 Too Many Requests with Retry-After")

	const raised = 50
	d.out.begin(fmt.Sprintf("Rate limits: raise it to %d with kubectl, as you would by hand", raised))
	before, err = d.configHash(ctx)
	if err != nil {
		return err
	}
	kpatch := fmt.Sprintf(`[{"op":"replace","path":"/spec/rules/0/limit","value":%d}]`, raised)
	if _, err := d.runKubectl(ctx, "-n", shopNamespace, "patch", "ratelimitpolicy", rateLimitName, "--type=json", "-p", kpatch); err != nil {
		return err
	}
	start := time.Now()
	hash, _, err = d.waitConfigInForce(ctx, before)
	if err != nil {
		return err
	}
	r, err := d.do(ctx, "GET", "/api/cart", nil, auth())
	if err != nil {
		return err
	}
	d.show("GET", "/api/cart", r, "RateLimit-Policy", "RateLimit")
	if err := expectStatus(r, http.StatusOK); err != nil {
		return err
	}
	d.out.ok("the sidecar enforces the new limit %s after kubectl patch (config %s)", time.Since(start).Round(10*time.Millisecond), hash)
	return nil
}

func (d *demo) cacheTour(ctx context.Context) error {
	d.out.begin("Cache: GET /products/42 twice: MISS (the app renders it), then HIT (served by the sidecar)")
	get := func() (response, app.ProductView, error) {
		var pv app.ProductView
		r, err := d.do(ctx, "GET", "/products/42", nil, nil)
		if err != nil {
			return r, pv, err
		}
		d.show("GET", "/products/42", r, "X-Cache", "Cache-Status")
		if err := expectStatus(r, http.StatusOK); err != nil {
			return r, pv, err
		}
		if err := json.Unmarshal(r.body, &pv); err != nil {
			return r, pv, fmt.Errorf("product body: %w", err)
		}
		return r, pv, nil
	}
	r, first, err := get()
	if err != nil {
		return err
	}
	if r.header.Get("X-Cache") != "MISS" {
		return fmt.Errorf("first GET: X-Cache %q, want MISS", r.header.Get("X-Cache"))
	}
	r, second, err := get()
	if err != nil {
		return err
	}
	if r.header.Get("X-Cache") != "HIT" {
		return fmt.Errorf("second GET: X-Cache %q, want HIT", r.header.Get("X-Cache"))
	}
	if second.Render != first.Render {
		return fmt.Errorf("HIT carries render %d, the MISS rendered %d: not the stored answer", second.Render, first.Render)
	}
	d.out.ok("MISS then HIT; the HIT is render #%d, stored by the MISS", second.Render)

	d.out.begin("Cache: PUT /products/42 invalidates it; the next GET is a MISS with the new body")
	update := app.Product{Name: "Towel (hoopy edition)", Price: 42}
	r, err = d.do(ctx, "PUT", "/products/42", update, nil)
	if err != nil {
		return err
	}
	d.show("PUT", `/products/42 {"name":"Towel (hoopy edition)","price":42}`, r)
	if err := expectStatus(r, http.StatusOK); err != nil {
		return err
	}
	r, third, err := get()
	if err != nil {
		return err
	}
	if r.header.Get("X-Cache") != "MISS" || third.Name != update.Name {
		return fmt.Errorf("GET after PUT: X-Cache %q name %q, want MISS %q", r.header.Get("X-Cache"), third.Name, update.Name)
	}
	d.out.ok("invalidated on write: MISS with the new name")
	return d.redisTour(ctx)
}

// redisTour shows where the state of the tour lives: in the Redis Cluster
// the operator formed, spread over its primaries by hash slot.
func (d *demo) redisTour(ctx context.Context) error {
	d.out.begin("Redis Cluster: the sessions, counters and cache entries of the tour, by primary")
	var rc v1alpha1.RedisCluster
	if err := d.k8s.Get(ctx, client.ObjectKey{Namespace: shopNamespace, Name: redisName}, &rc); err != nil {
		return err
	}
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{rc.Status.ClientService}, Password: d.password})
	defer cc.Close()
	var (
		mu    sync.Mutex
		lines []string
		total int64
	)
	err := cc.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
		size, err := n.DBSize(ctx).Result()
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		lines = append(lines, fmt.Sprintf("%s: %d keys", n.Options().Addr, size))
		total += size
		return nil
	})
	if err != nil {
		return fmt.Errorf("read the cluster through %s: %w", rc.Status.ClientService, err)
	}
	slices.Sort(lines)
	for _, l := range lines {
		d.out.say("primary %s", l)
	}
	if len(lines) != 3 || total == 0 {
		return fmt.Errorf("want 3 primaries holding the tour's keys, got %d primaries and %d keys", len(lines), total)
	}
	d.out.ok("%d keys across the 3 primaries; the sidecar found them from the seed %s, like any cluster client", total, rc.Status.ClientService)
	return nil
}

// walkthrough prints what to try by hand while the demo stays up.
func (d *demo) walkthrough() {
	fmt.Printf(`
== The demo stays up until Ctrl-C. Try it yourself (another terminal):

   export KUBECONFIG=%[1]s
   alias kubectl=%[2]s
   kubectl get gatehouse -A
   kubectl -n shop get ratelimitpolicy storefront-limits -o yaml

   curl -i %[3]s/api/cart                                   # 401
   TOKEN=$(curl -s %[3]s/login -d '{"user":"alice","password":"wonderland"}' | sed 's/.*"token":"\([^"]*\)".*/\1/')
   curl -i -H "Authorization: Bearer $TOKEN" %[3]s/api/cart  # 200
   curl -i %[3]s/products/42                                # X-Cache: MISS, then HIT

   # change the per-IP limit live; the sidecar enforces it within seconds
   # (the tour's requests count too: every request from 127.0.0.1 shares it):
   kubectl -n shop patch ratelimitpolicy storefront-limits --type=json \
     -p '[{"op":"replace","path":"/spec/rules/0/limit","value":3}]'
   curl -i -H "Authorization: Bearer $TOKEN" %[3]s/api/cart  # 429, Retry-After
   kubectl -n shop patch ratelimitpolicy storefront-limits --type=json \
     -p '[{"op":"replace","path":"/spec/rules/0/limit","value":1000}]'
   curl -i -H "Authorization: Bearer $TOKEN" %[3]s/api/cart  # 200 again

   sidecar status: curl %[4]s/readyz   admin API: %[5]s (curl --unix-socket <path> http://admin/…)
   logs: %[6]s/logs
`, d.kubeconfig, d.kubectl, d.dataURL, d.statusURL, d.adminURL, d.tmp)
}
