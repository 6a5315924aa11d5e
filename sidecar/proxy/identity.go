package proxy

import (
	"context"
	"net/http"
	"net/netip"
	"slices"
	"strings"

	"github.com/gatehouse-dev/gatehouse/sidecar/contract"
	"github.com/gatehouse-dev/gatehouse/sidecar/identity"
)

// identify records the client IP in the request context and for the app,
// in contract.ClientIPHeader. It runs after request.Normalize, which removed
// every incoming header in the reserved namespace, so the app can trust it.
func identify(trusted []netip.Prefix, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ip := clientIP(r.RemoteAddr, r.Header.Values("X-Forwarded-For"), trusted)
		ctx := r.Context()
		if ip.IsValid() {
			r.Header.Set(contract.ClientIPHeader, ip.String())
			ctx = identity.WithClientIP(ctx, ip)
		}
		if peer := parseHost(r.RemoteAddr); peer.IsValid() && isTrusted(peer, trusted) {
			ctx = context.WithValue(ctx, trustedPeerKey{}, true)
		}
		if ctx != r.Context() {
			r = r.WithContext(ctx)
		}
		next.ServeHTTP(w, r)
	})
}

// trustedPeerKey marks a request whose TCP peer is a trusted proxy, whose
// X-Forwarded-* headers the upstream passes on (forwardedHeaders).
type trustedPeerKey struct{}

// fromTrustedPeer reports whether identify found the request's peer in
// proxy.trustedProxies.
func fromTrustedPeer(r *http.Request) bool {
	v, _ := r.Context().Value(trustedPeerKey{}).(bool)
	return v
}

// clientIP returns the address of the client: the peer, unless the peer is a
// trusted proxy, in which case X-Forwarded-For is walked from the right (the
// hop closest to us) skipping trusted proxies; the first untrusted address is
// the client. Entries left of it were written by the client itself and are
// never believed. If every hop is trusted, the leftmost is the client. An
// unparsable entry ends the walk at the last trusted hop, since nothing
// beyond it can be attributed.
func clientIP(remoteAddr string, xff []string, trusted []netip.Prefix) netip.Addr {
	peer := parseHost(remoteAddr)
	if !peer.IsValid() || !isTrusted(peer, trusted) {
		return peer
	}
	client := peer
	for _, hops := range slices.Backward(xff) {

		for hops != "" {
			var hop string
			if j := strings.LastIndexByte(hops, ','); j >= 0 {
				hop, hops = hops[j+1:], hops[:j]
			} else {
				hop, hops = hops, ""
			}
			hop = strings.TrimSpace(hop)
			if hop == "" {
				continue
			}
			a := parseHost(hop)
			if !a.IsValid() {
				return client
			}
			client = a
			if !isTrusted(a, trusted) {
				return client
			}
		}
	}
	return client
}

// parseHost accepts "ip", "ip:port" and "[ipv6]:port", and unmaps
// IPv4-mapped IPv6 so that CIDRs written for IPv4 match.
func parseHost(s string) netip.Addr {
	// RemoteAddr is always "ip:port": try that first, since a failed parse
	// allocates its error.
	if i := strings.LastIndexByte(s, ':'); i > 0 && i < len(s)-1 && (s[0] == '[' || strings.IndexByte(s, ':') == i) {
		if ap, err := netip.ParseAddrPort(s); err == nil {
			return ap.Addr().Unmap()
		}
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap()
	}
	return netip.Addr{}
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
