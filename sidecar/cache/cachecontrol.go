package cache

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// cacheControl holds the Cache-Control directives a shared cache acts on
// (RFC 9111 section 5.2). Unknown directives are ignored, as the RFC requires.
type cacheControl struct {
	NoStore        bool
	NoCache        bool
	Private        bool
	Public         bool
	MustRevalidate bool
	// MaxAge and SMaxAge are -1 when absent.
	MaxAge  time.Duration
	SMaxAge time.Duration
}

// parseCacheControl parses every Cache-Control field line of h. A malformed
// max-age is treated as 0 (stale), the conservative reading RFC 9111 4.2.1
// asks for; duplicates keep the first value.
func parseCacheControl(h http.Header) cacheControl {
	cc := cacheControl{MaxAge: -1, SMaxAge: -1}
	for _, line := range h.Values("Cache-Control") {
		for d := range strings.SplitSeq(line, ",") {
			name, arg, hasArg := strings.Cut(strings.TrimSpace(d), "=")
			name = strings.ToLower(strings.TrimSpace(name))
			arg = strings.Trim(strings.TrimSpace(arg), `"`)
			switch name {
			case "no-store":
				cc.NoStore = true
			case "no-cache":
				// The qualified form (no-cache="Set-Cookie") is treated like the
				// unqualified one: stricter, never wrong.
				cc.NoCache = true
			case "private":
				cc.Private = true
			case "public":
				cc.Public = true
			case "must-revalidate", "proxy-revalidate":
				cc.MustRevalidate = true
			case "max-age":
				if cc.MaxAge < 0 {
					cc.MaxAge = deltaSeconds(arg, hasArg)
				}
			case "s-maxage":
				if cc.SMaxAge < 0 {
					cc.SMaxAge = deltaSeconds(arg, hasArg)
				}
			}
		}
	}
	return cc
}

func deltaSeconds(arg string, ok bool) time.Duration {
	if !ok {
		return 0
	}
	n, err := strconv.ParseInt(arg, 10, 64)
	if err != nil || n < 0 {
		return 0
	}
	const maxSeconds = 1 << 31 // RFC 9111 1.2.2: larger values mean "2^31"
	return time.Duration(min(n, maxSeconds)) * time.Second
}

// lifetime is the freshness lifetime of a response under a rule: the rule's
// ttl is the operator's upper bound, and an upstream s-maxage (preferred, being
// meant for shared caches) or max-age can only shorten it.
func (cc cacheControl) lifetime(ruleTTL time.Duration) time.Duration {
	switch {
	case cc.SMaxAge >= 0:
		return min(ruleTTL, cc.SMaxAge)
	case cc.MaxAge >= 0:
		return min(ruleTTL, cc.MaxAge)
	}
	return ruleTTL
}
