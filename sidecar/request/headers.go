package request

import (
	"net/http"
	"net/textproto"
	"strings"

	"github.com/gatehouse-dev/gatehouse/sidecar/contract"
)

// reservedFolded is contract.HeaderPrefix as IsReserved compares it.
var reservedFolded = strings.ToLower(contract.HeaderPrefix)

// IsReserved reports whether a header of this name is the sidecar's to set:
// its name starts with contract.HeaderPrefix once folded to lower case with
// "_" read as "-". The underscore spellings matter because CGI, WSGI, PHP
// and Rack servers (and nginx or Apache with underscores_in_headers) present
// X_Gatehouse_Subject and X-Gatehouse-Subject to the app as the same
// HTTP_X_GATEHOUSE_SUBJECT.
func IsReserved(name string) bool {
	if len(name) < len(reservedFolded) {
		return false
	}
	for i := 0; i < len(reservedFolded); i++ {
		c := name[i]
		switch {
		case c == '_':
			c = '-'
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		if c != reservedFolded[i] {
			return false
		}
	}
	return true
}

// stripReserved removes every reserved header from h.
func stripReserved(h http.Header) {
	for k := range h {
		if IsReserved(k) {
			delete(h, k)
		}
	}
}

// dropConnectionOptions applies RFC 9110 §7.6.1 at entry: every header named
// in Connection is removed, and Connection keeps only the options the
// reverse proxy itself handles (Upgrade, TE, Keep-Alive, close, …), so
// nothing later, including httputil.ReverseProxy's own hop-by-hop removal,
// can drop a header after a feature read it or the sidecar set it.
func dropConnectionOptions(h http.Header) {
	values := h["Connection"]
	if len(values) == 0 {
		return
	}
	dropped := false
	for _, v := range values {
		for opt := range strings.SplitSeq(v, ",") {
			opt = textproto.TrimString(opt)
			if opt == "" || proxyOption(opt) {
				continue
			}
			h.Del(opt)
			dropped = true
		}
	}
	if !dropped {
		return
	}
	var kept []string
	for _, v := range values {
		for opt := range strings.SplitSeq(v, ",") {
			if opt = textproto.TrimString(opt); opt != "" && proxyOption(opt) {
				kept = append(kept, opt)
			}
		}
	}
	if len(kept) == 0 {
		h.Del("Connection")
		return
	}
	h["Connection"] = []string{strings.Join(kept, ", ")}
}

// proxyOption reports whether a Connection option is one the reverse proxy
// consumes itself: "close", and the hop-by-hop headers httputil.ReverseProxy
// removes on its own and re-adds where needed (Upgrade for WebSocket, TE:
// trailers for gRPC). They never reach the app as named, so leaving them
// changes nothing the app sees, and removing TE or Upgrade would break the
// protocol switch or trailers RFC 9110 asks clients to announce this way.
func proxyOption(opt string) bool {
	for _, h := range [...]string{"close", "Keep-Alive", "Upgrade", "Te", "Trailer", "Transfer-Encoding", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization"} {
		if strings.EqualFold(opt, h) {
			return true
		}
	}
	return false
}
