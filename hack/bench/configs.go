package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// features is what one gatehouse configuration enables.
type features struct {
	session   bool
	ratelimit bool
	leased    bool // the rate-limit rules with quota: Leased
	cache     bool // a cache rule on the measured path
	inProcess bool // with the in-process tier
	// decision is one strict FixedWindow rule and nothing else, for Redis'
	// cost of a decision next to envoyproxy/ratelimit's: "hot" (one global
	// key) or "keys" (one key per X-Bench-Key value).
	decision string
}

// sidecarConfig renders the sidecar config for f against the Redis
// connection (mode "Standalone" or "Cluster"); mode "" means no Redis and no
// policy at all (passthrough).
func sidecarConfig(f features, mode string, addrs []string) ([]byte, error) {
	doc := map[string]any{
		"apiVersion": "sidecar.gatehouse.dev/v1alpha1",
		"kind":       "SidecarConfig",
	}
	if mode == "" {
		return json.MarshalIndent(doc, "", "  ")
	}
	doc["redis"] = []any{map[string]any{
		"name":  "bench",
		"mode":  mode,
		"addrs": addrs,
	}}
	meta := func(name string) map[string]any {
		return map[string]any{"namespace": "bench", "name": name, "redis": "bench"}
	}
	if f.session {
		s := meta("sessions")
		// Sliding is what the SessionPolicy CRD defaults to.
		s["ttl"] = "1h"
		s["sliding"] = true
		doc["sessions"] = []any{s}
	}
	if f.ratelimit {
		rl := meta("limits")
		quota := "Strict"
		if f.leased {
			quota = "Leased"
		}
		// Limits no benchmark reaches: every request is counted in Redis and
		// admitted, which is the common case worth measuring. One limit does
		// not depend on the session (client IP), one does (subject).
		rl["rules"] = []any{
			map[string]any{"name": "per-ip", "key": map[string]any{"clientIP": true}, "limit": 1_000_000_000, "window": "1m", "algorithm": "FixedWindow", "quota": quota},
			map[string]any{"name": "per-user", "key": map[string]any{"subject": true}, "limit": 1_000_000_000, "window": "1m", "algorithm": "FixedWindow", "quota": quota},
		}
		doc["rateLimits"] = []any{rl}
	}
	if f.decision != "" {
		rl := meta("decisions")
		key := map[string]any{}
		if f.decision == "keys" {
			key["header"] = benchKeyHeader
		}
		rl["rules"] = []any{
			map[string]any{"name": "decision", "key": key, "limit": 1_000_000_000, "window": "1m", "algorithm": "FixedWindow"},
		}
		doc["rateLimits"] = []any{rl}
	}
	if f.cache {
		c := meta("cache")
		// The bench app sends no caching headers: Override mode makes its
		// answers fresh for the rule's ttl, as every run before it did.
		rule := map[string]any{"name": "all", "ttl": "60s", "mode": "Override"}
		if f.session {
			// A shared cache must not serve one user's answer to another:
			// requests with a token are cached per subject, or not at all.
			rule["varyBySubject"] = true
		}
		c["rules"] = []any{rule}
		if f.inProcess {
			c["inProcess"] = map[string]any{"maxEntries": 10000, "maxBytes": 64 << 20}
		}
		doc["caches"] = []any{c}
	}
	return json.MarshalIndent(doc, "", "  ")
}

// nginxConf is one nginx serving two ports: plain proxy_pass and proxy_cache.
// Workers match the sidecar's GOMAXPROCS (one per core).
func nginxConf(dir, upstream, plainAddr, cacheAddr string, root bool) string {
	user := ""
	if root {
		// As root nginx would drop to "nobody", which cannot write the
		// temporary cache directory.
		user = "user root root;\n"
	}
	p := func(name string) string { return filepath.Join(dir, name) }
	return user + fmt.Sprintf(`worker_processes auto;
daemon off;
master_process on;
pid %s;
error_log %s warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %s;
  proxy_temp_path %s;
  fastcgi_temp_path %s;
  uwsgi_temp_path %s;
  scgi_temp_path %s;
  upstream app {
    server %s;
    keepalive 256;
  }
  proxy_cache_path %s levels=1:2 keys_zone=bench:10m max_size=256m inactive=10m use_temp_path=off;
  server {
    listen %s;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
  server {
    listen %s;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache bench;
      proxy_cache_valid 200 10m;
      add_header X-Cache $upstream_cache_status;
    }
  }
}
`, p("nginx.pid"), p("nginx-error.log"), p("body"), p("proxy"), p("fastcgi"), p("uwsgi"), p("scgi"),
		upstream, p("cache"), plainAddr, cacheAddr)
}

// wrkScript renders the Lua script of one wrk run: a bearer token per wrk
// thread (sessions), a unique path per request (cache misses) and a done()
// that prints the figures wrk's text report lacks (p99.9) as one JSON line.
// benchKeyHeader carries the rate-limit key of the "keys" decision runs,
// one of benchKeys values per request.
const (
	benchKeyHeader = "X-Bench-Key"
	benchKeys      = 10000
)

// load is what the wrk script sends besides GET of the target URL.
type load struct {
	tokens       []string
	uniquePrefix string
	// keys sets X-Bench-Key to one of benchKeys values per request (or, with
	// erl, the descriptor value).
	keys bool
	// erl POSTs envoyproxy/ratelimit's JSON API instead: one descriptor per
	// request, the key "hot" (one counter) or "key" (one per value).
	erl bool
}

func wrkScript(dir, name string, l load) (string, error) {
	quoted := make([]string, len(l.tokens))
	for i, t := range l.tokens {
		quoted[i] = fmt.Sprintf("%q", t)
	}
	unique := "false"
	if l.uniquePrefix != "" {
		unique = "true"
	}
	src := fmt.Sprintf(`local tokens = {%s}
local unique = %s
local prefix = %q
local keys = %t
local erl = %t
local nkeys = %d
local threads = {}
local counter = 0

function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads)
end

function init(args)
  if #tokens > 0 then
    wrk.headers["Authorization"] = "Bearer " .. tokens[((id - 1) %% #tokens) + 1]
  end
  math.randomseed(id)
end

if unique then
  request = function()
    counter = counter + 1
    return wrk.format("GET", prefix .. id .. "-" .. counter)
  end
elseif erl then
  wrk.headers["Content-Type"] = "application/json"
  request = function()
    local entry = '{"key":"hot","value":"all"}'
    if keys then
      entry = '{"key":"key","value":"k' .. math.random(nkeys) .. '"}'
    end
    return wrk.format("POST", nil, nil, '{"domain":"bench","descriptors":[{"entries":[' .. entry .. ']}]}')
  end
elseif keys then
  request = function()
    wrk.headers[%q] = "k" .. math.random(nkeys)
    return wrk.format("GET")
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('BENCH {"requests":%%d,"duration_us":%%d,"socket_errors":%%d,"status_errors":%%d,"p50_us":%%d,"p99_us":%%d,"p999_us":%%d}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
`, strings.Join(quoted, ", "), unique, l.uniquePrefix, l.keys, l.erl, benchKeys, benchKeyHeader)
	path := filepath.Join(dir, name+".lua")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		return "", fmt.Errorf("write wrk script: %w", err)
	}
	return path, nil
}

// erlConfig is envoyproxy/ratelimit's rule file for the decision runs: the
// same limit as the gatehouse "decision" rule, on one key ("hot") and per
// value ("key").
const erlConfig = `domain: bench
descriptors:
  - key: hot
    rate_limit:
      unit: minute
      requests_per_unit: 1000000000
  - key: key
    rate_limit:
      unit: minute
      requests_per_unit: 1000000000
`
