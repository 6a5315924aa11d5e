package proxy

import (
	"net/http"
	"net/netip"
	"slices"
	"strings"

	"github.com/gatehouse-dev/gatehouse/sidecar/contract"
	"github.com/gatehouse-dev/gatehouse/sidecar/identity"
)

// headerPrefix is the namespace of headers the sidecar sends to the app. The
// app may trust them only because every incoming one is removed first.
const headerPrefix = contract.HeaderPrefix

// identify is the first middleware: it strips forged X-Gatehouse-* headers
// and records the client IP in the request context and for the app.
func identify(trusted []netip.Prefix, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k := range r.Header {
			// Header keys are canonical when they come off the wire, but a
			// handler in front of us could have added a raw key.
			if len(k) >= len(headerPrefix) && strings.EqualFold(k[:len(headerPrefix)], headerPrefix) {
				delete(r.Header, k)
			}
		}
		for k := range r.Trailer {
			if len(k) >= len(headerPrefix) && strings.EqualFold(k[:len(headerPrefix)], headerPrefix) {
				delete(r.Trailer, k)
			}
		}
		ip := clientIP(r.RemoteAddr, r.Header.Values("X-Forwarded-For"), trusted)
		if ip.IsValid() {
			r.Header.Set(contract.ClientIPHeader, ip.String())
			r = r.WithContext(identity.WithClientIP(r.Context(), ip))
		}
		next.ServeHTTP(w, r)
	})
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
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap()
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap()
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
