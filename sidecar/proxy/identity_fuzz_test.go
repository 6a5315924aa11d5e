package proxy

import (
	"net/netip"
	"strings"
	"testing"
)

// FuzzClientIP walks attacker-controlled X-Forwarded-For lines: whatever they
// hold, an untrusted peer is always the client (a client cannot choose its
// identity), and a trusted peer's answer is the peer or one of the listed
// hops, never an address nobody sent.
//
//	go test ./sidecar/proxy -run '^$' -fuzz FuzzClientIP -fuzztime 30s
func FuzzClientIP(f *testing.F) {
	f.Add("10.0.0.1:5555", "6.6.6.6, 198.51.100.9, 10.1.1.1", "10.2.2.2")
	f.Add("203.0.113.7:1", "1.2.3.4", "")
	f.Add("[fd00::1]:5555", "[2001:db8::5]:443, fd12::3", "garbage,,")
	f.Add("[::ffff:10.0.0.1]:5555", "::ffff:198.51.100.9", " , ")
	f.Add("pipe", "1.2.3.4", "")
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	f.Fuzz(func(t *testing.T, remote, xff1, xff2 string) {
		xff := []string{xff1, xff2}
		got := clientIP(remote, xff, trusted)
		peer := parseHost(remote)
		if !peer.IsValid() || !isTrusted(peer, trusted) {
			if got != peer {
				t.Fatalf("untrusted peer %q: client %v, want the peer", remote, got)
			}
			return
		}
		if got == peer {
			return
		}
		for _, line := range xff {
			for hop := range strings.SplitSeq(line, ",") {
				if parseHost(strings.TrimSpace(hop)) == got {
					return
				}
			}
		}
		t.Fatalf("clientIP(%q, %q) = %v: neither the peer nor a listed hop", remote, xff, got)
	})
}
