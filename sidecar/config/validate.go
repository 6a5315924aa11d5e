package config

import (
	"fmt"
	"maps"
	"net"
	"regexp"
	"slices"
	"strconv"
)

// Validate checks the document's own structure (normally after Default):
// its version, the Redis connections, and what every policy shares — its
// identity, its selector and the connection it names. It returns every
// problem as FieldErrors, or nil.
//
// What a section says beyond that is its feature's business: each feature
// compiles its own section (session.Compile, ratelimit.Compile,
// cache.Compile), and sidecar/gate runs Validate and those together, as the
// sidecar does before it builds anything. Validate alone does not make a
// document loadable.
func (c *Config) Validate() error {
	var v validator
	if c.APIVersion != APIVersion {
		v.errs.Add("apiVersion", fmt.Sprintf("must be %q, got %q", APIVersion, c.APIVersion))
	}
	if c.Kind != Kind {
		v.errs.Add("kind", fmt.Sprintf("must be %q, got %q", Kind, c.Kind))
	}
	redis := map[string]bool{}
	for i, r := range c.Redis {
		p := fmt.Sprintf("redis[%d]", i)
		v.redis(p, r)
		if r.Name != "" {
			v.errs.Unique(p+".name", r.Name, "connection name", redis)
		}
	}
	v.redisNames = redis

	seen := map[string]bool{}
	for i, s := range c.Sessions {
		v.meta(fmt.Sprintf("sessions[%d]", i), s.PolicyMeta, seen)
	}
	seen = map[string]bool{}
	for i, r := range c.RateLimits {
		v.meta(fmt.Sprintf("rateLimits[%d]", i), r.PolicyMeta, seen)
	}
	seen = map[string]bool{}
	for i, cp := range c.Caches {
		v.meta(fmt.Sprintf("caches[%d]", i), cp.PolicyMeta, seen)
	}
	return v.errs.Err()
}

type validator struct {
	errs       FieldErrors
	redisNames map[string]bool
}

var (
	envRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	// labelKeyRE accepts Kubernetes label keys: an optional DNS prefix and a name.
	labelKeyRE = regexp.MustCompile(`^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`)
)

func (v *validator) redis(p string, r RedisConnection) {
	es := &v.errs
	es.Name(p+".name", r.Name)
	switch r.Mode {
	case RedisStandalone, RedisCluster, RedisSentinel:
	case "":
		es.Add(p+".mode", "required: Standalone, Cluster or Sentinel")
	default:
		es.Add(p+".mode", fmt.Sprintf("unknown mode %q: must be Standalone, Cluster or Sentinel", r.Mode))
	}
	if len(r.Addrs) == 0 {
		es.Add(p+".addrs", "at least one host:port is required")
	}
	if r.Mode == RedisStandalone && len(r.Addrs) > 1 {
		es.Add(p+".addrs", "Standalone takes exactly one address")
	}
	for i, a := range r.Addrs {
		host, port, err := net.SplitHostPort(a)
		if err != nil || host == "" {
			es.Add(fmt.Sprintf("%s.addrs[%d]", p, i), fmt.Sprintf("%q is not host:port", a))
			continue
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			es.Add(fmt.Sprintf("%s.addrs[%d]", p, i), fmt.Sprintf("invalid port in %q", a))
		}
	}
	if r.Mode == RedisSentinel && r.MasterName == "" {
		es.Add(p+".masterName", "required in Sentinel mode")
	}
	if r.Mode != RedisSentinel && r.MasterName != "" {
		es.Add(p+".masterName", "only valid in Sentinel mode")
	}
	if r.PasswordEnv != "" && !envRE.MatchString(r.PasswordEnv) {
		es.Add(p+".passwordEnv", fmt.Sprintf("%q is not an environment variable name", r.PasswordEnv))
	}
	if r.DB < 0 {
		es.Add(p+".db", "must not be negative")
	}
	if r.Mode == RedisCluster && r.DB != 0 {
		es.Add(p+".db", "Redis Cluster only has database 0")
	}
	if r.PoolSize < 0 {
		es.Add(p+".poolSize", "must not be negative")
	}
	es.Positive(p+".dialTimeout", r.DialTimeout)
	es.Positive(p+".readTimeout", r.ReadTimeout)
	es.Positive(p+".writeTimeout", r.WriteTimeout)
	if r.MaxRetries < -1 {
		es.Add(p+".maxRetries", "must be -1 (no retries) or more")
	}
	if r.TLS != nil && r.TLS.InsecureSkipVerify && r.TLS.CAFile != "" {
		es.Add(p+".tls", "caFile and insecureSkipVerify are mutually exclusive")
	}
}

// meta checks what every policy shares; seen holds the namespace/name
// pairs of the list so far, which must be unique.
func (v *validator) meta(p string, m PolicyMeta, seen map[string]bool) {
	es := &v.errs
	es.Name(p+".namespace", m.Namespace)
	es.Name(p+".name", m.Name)
	if m.Namespace != "" && m.Name != "" {
		es.Unique(p+".name", m.Namespace+"/"+m.Name, "policy", seen)
	}
	switch {
	case m.Redis == "":
		es.Add(p+".redis", "required: the name of a redis connection")
	case !v.redisNames[m.Redis]:
		es.Add(p+".redis", fmt.Sprintf("unknown redis connection %q", m.Redis))
	}
	v.selector(p+".selector", m.Selector)
}

func (v *validator) selector(p string, s Selector) {
	es := &v.errs
	for _, k := range slices.Sorted(maps.Keys(s.MatchLabels)) {
		if !labelKeyRE.MatchString(k) {
			es.Add(p+".matchLabels", fmt.Sprintf("invalid label key %q", k))
		}
	}
	for i, r := range s.MatchExpressions {
		rp := fmt.Sprintf("%s.matchExpressions[%d]", p, i)
		if !labelKeyRE.MatchString(r.Key) {
			es.Add(rp+".key", fmt.Sprintf("invalid label key %q", r.Key))
		}
		switch r.Operator {
		case SelectorIn, SelectorNotIn:
			if len(r.Values) == 0 {
				es.Add(rp+".values", fmt.Sprintf("required for operator %s", r.Operator))
			}
		case SelectorExists, SelectorDoesNotExist:
			if len(r.Values) > 0 {
				es.Add(rp+".values", fmt.Sprintf("must be empty for operator %s", r.Operator))
			}
		default:
			es.Add(rp+".operator", fmt.Sprintf("unknown operator %q: must be In, NotIn, Exists or DoesNotExist", r.Operator))
		}
	}
}
