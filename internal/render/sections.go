package render

import (
	"net"
	"strconv"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gatehouse-dev/gatehouse/api/v1alpha1"
	"github.com/gatehouse-dev/gatehouse/internal/redisnames"
	"github.com/gatehouse-dev/gatehouse/sidecar/config"
)

// redisConnection describes how sidecars in namespace reach rc. The address
// is the one the RedisCluster reports in status (the demo points it at local
// processes), else its client Service.
func redisConnection(namespace string, rc *v1alpha1.RedisCluster) config.RedisConnection {
	addr := rc.Status.ClientService
	if addr == "" {
		host := redisnames.ClientService(rc.Name)
		if namespace != "" {
			host += "." + namespace + ".svc"
		}
		addr = net.JoinHostPort(host, strconv.Itoa(redisnames.Port))
	}
	return config.RedisConnection{
		Name:        rc.Name,
		Mode:        config.RedisCluster,
		Addrs:       []string{addr},
		PasswordEnv: redisnames.PasswordEnv(rc.Name),
		// The RedisCluster reconciler caps it to the connection budget.
		PoolSize: int(rc.Status.SidecarPoolSize),
	}
}

func policyMeta(namespace, name string, sel metav1.LabelSelector, redis string) config.PolicyMeta {
	return config.PolicyMeta{Namespace: namespace, Name: name, Selector: selector(sel), Redis: redis}
}

func selector(s metav1.LabelSelector) config.Selector {
	out := config.Selector{MatchLabels: s.MatchLabels}
	for _, e := range s.MatchExpressions {
		out.MatchExpressions = append(out.MatchExpressions, config.SelectorRequirement{
			Key: e.Key, Operator: config.SelectorOperator(e.Operator), Values: e.Values,
		})
	}
	return out
}

func duration(d *metav1.Duration) config.Duration {
	if d == nil {
		return 0
	}
	return config.Duration(d.Duration)
}

func match(m v1alpha1.HTTPMatch) config.Match {
	out := config.Match{PathPrefix: m.PathPrefix, CaseInsensitive: deref(m.CaseInsensitive, false)}
	for _, method := range m.Methods {
		out.Methods = append(out.Methods, string(method))
	}
	if m.Header != nil {
		out.Header = &config.HeaderMatch{Name: m.Header.Name, Value: m.Header.Value}
	}
	return out
}

func sessionSection(namespace string, p v1alpha1.SessionPolicy) config.SessionPolicy {
	s := p.Spec
	out := config.SessionPolicy{
		PolicyMeta:           policyMeta(namespace, p.Name, s.PodSelector, s.RedisRef.Name),
		Token:                tokenSource(s.Token),
		TTL:                  duration(s.TTL),
		Sliding:              s.Sliding == nil || *s.Sliding,
		MaxLifetime:          duration(s.MaxLifetime),
		RefreshBelow:         duration(s.RefreshBelow),
		RequireFor:           s.RequireFor,
		PublicPaths:          s.PublicPaths,
		CaseInsensitivePaths: deref(s.CaseInsensitivePaths, false),
		ForwardClaims:        s.ForwardClaims,
		ForwardToken:         deref(s.ForwardToken, false),
	}
	return out
}

// tokenSource maps the CRD's token source. The CRD defaults scheme to
// Bearer even where no header is read (a cookie-only policy); the sidecar
// refuses a scheme without a header, so it is dropped there.
func tokenSource(t v1alpha1.SessionTokenSource) config.TokenSource {
	out := config.TokenSource{Header: deref(t.Header, "Authorization"), Cookie: t.Cookie}
	if out.Header != "" {
		out.Scheme = deref(t.Scheme, "Bearer")
	}
	return out
}

func rateLimitSection(namespace string, p v1alpha1.RateLimitPolicy) config.RateLimitPolicy {
	out := config.RateLimitPolicy{PolicyMeta: policyMeta(namespace, p.Name, p.Spec.PodSelector, p.Spec.RedisRef.Name),
		Headers: config.HeaderForm(p.Spec.Headers)}
	for _, r := range p.Spec.Rules {
		rule := config.RateLimitRule{
			Name:  r.Name,
			Match: match(r.Match),
			// Global is the absence of key attributes in the sidecar schema.
			Key: config.RateLimitKey{
				ClientIP: r.Key.ClientIP, Header: r.Key.Header, Subject: r.Key.Subject, Path: r.Key.Path,
			},
			Limit:       r.Limit,
			Window:      config.Duration(r.Window.Duration),
			Algorithm:   config.Algorithm(r.Algorithm),
			Mode:        config.Mode(r.Mode),
			FailureMode: config.FailureMode(r.FailureMode),
			Quota:       config.Quota(r.Quota),
		}
		if r.Burst != nil {
			rule.Burst = *r.Burst
		}
		out.Rules = append(out.Rules, rule)
	}
	return out
}

func cacheSection(namespace string, p v1alpha1.CachePolicy) config.CachePolicy {
	s := p.Spec
	out := config.CachePolicy{PolicyMeta: policyMeta(namespace, p.Name, s.PodSelector, s.RedisRef.Name), CanonicalHost: s.CanonicalHost}
	if s.InProcess != nil {
		tier := &config.InProcessTier{MaxEntries: int(s.InProcess.MaxEntries), MaxBytes: 64 << 20}
		if s.InProcess.MaxBytes != nil {
			tier.MaxBytes = s.InProcess.MaxBytes.Value()
		}
		out.InProcess = tier
	}
	for _, r := range s.Rules {
		rule := config.CacheRule{
			Name:                 r.Name,
			Match:                match(r.Match),
			TTL:                  config.Duration(r.TTL.Duration),
			VaryHeaders:          r.VaryHeaders,
			VaryBySubject:        r.VaryBySubject,
			Mode:                 config.CacheMode(r.Mode),
			HonorCacheControl:    r.HonorCacheControl == nil || *r.HonorCacheControl,
			StaleWhileRevalidate: optionalDuration(r.StaleWhileRevalidate),
			StaleIfError:         optionalDuration(r.StaleIfError),
			SetCookie:            config.SetCookiePolicy(r.SetCookie),
			LockTimeout:          duration(r.LockTimeout),
			Tags:                 r.Tags,
		}
		if r.MaxVariants != nil {
			rule.MaxVariants = int(*r.MaxVariants)
		}
		if r.MaxBodyBytes != nil {
			// The sidecar bounds it (cache.Compile); an out-of-range value is
			// refused there, naming the field.
			rule.MaxBodyBytes = new(r.MaxBodyBytes.Value())
		}
		out.Rules = append(out.Rules, rule)
	}
	for _, r := range s.Invalidate {
		out.Invalidate = append(out.Invalidate, config.InvalidateRule{
			Name:         r.Name,
			Match:        match(r.Match),
			RequestPath:  r.RequestPath,
			Paths:        r.Paths,
			PathPrefixes: r.PathPrefixes,
			Tags:         r.Tags,
			GRPC:         r.GRPC,
		})
	}
	return out
}

// optionalDuration keeps an omitted duration omitted, so the sidecar
// config's defaults (which depend on other fields) decide it.
func optionalDuration(d *metav1.Duration) *config.Duration {
	if d == nil {
		return nil
	}
	v := config.Duration(d.Duration)
	return &v
}

// deref returns *p, or def when the field was omitted (the API server fills
// in defaults, but a policy built in Go may not have passed through it).
func deref[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}
