// Package gate is the one validation gate of the sidecar configuration:
// Compile checks a document and compiles every part of it exactly as a
// sidecar build does, minus Redis — Caddy's "validate by provisioning".
//
// The sidecar builds its handler graph from a compiled Document only, and
// the feature constructors (session.New, ratelimit.New, cache.New) take
// the compiled policies and validate nothing themselves: a document this
// package accepts is one the sidecar loads, whatever connection its
// policies find. The operator runs Compile on every section it renders
// (internal/render), so a policy is reported in force only if the
// sidecars accept it.
//
// Compile does no I/O: nothing here dials Redis, reads a file or looks at
// the environment. What only the pod can tell — a Redis password variable
// that is not set, a TLS bundle that cannot be read — is checked when the
// sidecar creates its Redis clients.
package gate

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/redisconn"
	"github.com/gatehouse-dev/gatehouse/sidecar/cache"
	"github.com/gatehouse-dev/gatehouse/sidecar/config"
	"github.com/gatehouse-dev/gatehouse/sidecar/ratelimit"
	"github.com/gatehouse-dev/gatehouse/sidecar/session"
)

// Document is a compiled configuration document. It is immutable.
type Document struct {
	// Hash is the operator's content hash of the document.
	Hash string
	// Proxy is the compiled proxy section.
	Proxy Proxy
	// Redis holds the access layer's options of every connection, by name.
	Redis map[string]redisconn.Options
	// Sessions, RateLimits and Caches are the compiled policies, in
	// document order.
	Sessions   []Section[*session.Policy]
	RateLimits []Section[*ratelimit.Policy]
	Caches     []Section[*cache.Policy]
}

// Section is one compiled policy and what selects it.
type Section[T any] struct {
	// Meta is the policy's identity, selector and connection, as written.
	Meta config.PolicyMeta
	// Policy is what the feature's constructor takes.
	Policy T
}

// Proxy is the compiled proxy section.
type Proxy struct {
	// TrustedProxies are the peers whose X-Forwarded-For is believed.
	TrustedProxies []netip.Prefix
	// WriteTimeout and BodyReadTimeout are the progress deadlines towards
	// the client.
	WriteTimeout, BodyReadTimeout time.Duration
}

// Compile checks c and compiles it: the document's own structure
// (config.Validate), the proxy section, the Redis connections and every
// policy through its feature's Compile. It reports every problem at once as
// config.FieldErrors with document paths ("rateLimits[0].rules[1].window").
// c is not modified; each part is defaulted on a copy (config defaults.go).
func Compile(c *config.Config) (*Document, error) {
	var errs config.FieldErrors
	doc := &Document{Hash: c.Hash, Redis: map[string]redisconn.Options{}}

	// Validate reads the connections' timeouts, so it sees them defaulted;
	// of the policies it reads nothing a default changes.
	structure := *c
	structure.Redis = make([]config.RedisConnection, len(c.Redis))
	for i, r := range c.Redis {
		r.Default()
		structure.Redis[i] = r
		doc.Redis[r.Name] = redisOptions(r)
	}
	errs.Merge("", structure.Validate())

	var err error
	doc.Proxy, err = CompileProxy(c.Proxy)
	errs.Merge("proxy", err)

	for i, s := range c.Sessions {
		p, err := session.Compile(s)
		errs.Merge(fmt.Sprintf("sessions[%d]", i), err)
		doc.Sessions = append(doc.Sessions, Section[*session.Policy]{Meta: s.PolicyMeta, Policy: p})
	}
	for i, s := range c.RateLimits {
		p, err := ratelimit.Compile(s)
		errs.Merge(fmt.Sprintf("rateLimits[%d]", i), err)
		doc.RateLimits = append(doc.RateLimits, Section[*ratelimit.Policy]{Meta: s.PolicyMeta, Policy: p})
	}
	for i, s := range c.Caches {
		p, err := cache.Compile(s)
		errs.Merge(fmt.Sprintf("caches[%d]", i), err)
		doc.Caches = append(doc.Caches, Section[*cache.Policy]{Meta: s.PolicyMeta, Policy: p})
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return doc, nil
}

// CompileProxy checks and compiles a proxy section: the document's, or the
// settings of the sidecar's command line that override it (which the
// injection webhook checks with this too, before a pod is admitted). Paths
// in the error are relative to the section ("trustedProxies[1]").
func CompileProxy(p config.Proxy) (Proxy, error) {
	p.Default()
	var errs config.FieldErrors
	out := Proxy{WriteTimeout: p.WriteTimeout.D(), BodyReadTimeout: p.BodyReadTimeout.D()}
	for i, s := range p.TrustedProxies {
		pfx, err := parseTrustedProxy(s)
		if err != nil {
			errs.Add(fmt.Sprintf("trustedProxies[%d]", i), err.Error())
			continue
		}
		out.TrustedProxies = append(out.TrustedProxies, pfx)
	}
	errs.Positive("writeTimeout", p.WriteTimeout)
	errs.Positive("bodyReadTimeout", p.BodyReadTimeout)
	if err := errs.Err(); err != nil {
		return Proxy{}, err
	}
	return out, nil
}

// parseTrustedProxy parses one trustedProxies entry: a CIDR, or a single
// address meaning just that host.
func parseTrustedProxy(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("invalid CIDR %q", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("invalid CIDR or address %q", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// redisOptions converts a defaulted connection of the document into the
// access layer's options.
func redisOptions(c config.RedisConnection) redisconn.Options {
	o := redisconn.Options{
		Name: c.Name, Mode: redisconn.Mode(c.Mode), Addrs: c.Addrs, MasterName: c.MasterName,
		Username: c.Username, PasswordEnv: c.PasswordEnv, DB: c.DB, PoolSize: c.PoolSize,
		DialTimeout: c.DialTimeout.D(), ReadTimeout: c.ReadTimeout.D(), WriteTimeout: c.WriteTimeout.D(),
		MaxRetries: c.MaxRetries,
	}
	if c.TLS != nil {
		o.TLS = &redisconn.TLSOptions{CAFile: c.TLS.CAFile, ServerName: c.TLS.ServerName, InsecureSkipVerify: c.TLS.InsecureSkipVerify}
	}
	return o
}
