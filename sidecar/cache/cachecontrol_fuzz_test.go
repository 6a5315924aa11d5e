package cache

import (
	"net/http"
	"testing"
	"time"
)

// FuzzCacheControl parses arbitrary upstream Cache-Control lines: an app can
// only shorten what a rule allows, never lengthen it or make it negative,
// and directive ages stay within RFC 9111's 2^31 seconds.
//
//	go test ./sidecar/cache -run '^$' -fuzz FuzzCacheControl -fuzztime 30s
func FuzzCacheControl(f *testing.F) {
	f.Add("max-age=60, s-maxage=30", "")
	f.Add(`no-cache="Set-Cookie", private`, "no-store")
	f.Add("max-age=99999999999999999999", "MAX-AGE = 5")
	f.Add(`s-maxage="10", max-age=-1`, "public,,must-revalidate")
	f.Add("max-age", "s-maxage=")
	f.Fuzz(func(t *testing.T, line1, line2 string) {
		h := http.Header{"Cache-Control": {line1, line2}}
		cc := parseCacheControl(h)
		const maxAge = (1 << 31) * time.Second
		for name, d := range map[string]time.Duration{"max-age": cc.MaxAge, "s-maxage": cc.SMaxAge} {
			if d < -1 || d > maxAge {
				t.Fatalf("%s = %v out of range for %q", name, d, h["Cache-Control"])
			}
		}
		const ruleTTL = 5 * time.Minute
		if got := cc.lifetime(ruleTTL); got < 0 || got > ruleTTL {
			t.Fatalf("lifetime %v outside [0, %v] for %q", got, ruleTTL, h["Cache-Control"])
		}
	})
}
