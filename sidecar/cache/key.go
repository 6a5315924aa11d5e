package cache

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// keyspace builds every Redis key and channel name of one policy. The layout:
//
//	<prefix>{<ns>/<policy>/<pathhash>}:v:<varianthash>  one stored response
//	<prefix>{<ns>/<policy>/<pathhash>}:vars              set of that path's variant keys
//	<prefix>{<ns>/<policy>/<pathhash>}:vary              the upstream Vary spec of the path
//	<prefix>{<ns>/<policy>/<pathhash>}:gen               invalidation generation of the path
//	<prefix>{<ns>/<policy>}:paths                        zset path -> expiry, for prefix eviction
//	<prefix>{<ns>/<policy>}:tag:<tag>                    zset path -> expiry, for tag eviction
//	<prefix>{<ns>/<policy>}:inv                          invalidation broadcast channel
//
// Everything about one path shares a hash tag, so evicting a path is a
// single-slot operation on a cluster; the indexes share the policy's tag.
type keyspace struct {
	prefix string // "<keyPrefix><ns>/<policy>"
	base   string // keyPrefix
	policy string // "<ns>/<policy>"
}

func newKeyspace(keyPrefix, namespace, policy string) keyspace {
	p := namespace + "/" + policy
	return keyspace{prefix: keyPrefix + p, base: keyPrefix, policy: p}
}

// pathTag is the hash tag shared by all keys of one path.
func (k keyspace) pathTag(path string) string {
	sum := sha256.Sum256([]byte(path))
	return "{" + k.policy + "/" + hex.EncodeToString(sum[:8]) + "}"
}

func (k keyspace) variant(path, variantHash string) string {
	return k.base + k.pathTag(path) + ":v:" + variantHash
}
func (k keyspace) vars(path string) string { return k.base + k.pathTag(path) + ":vars" }
func (k keyspace) vary(path string) string { return k.base + k.pathTag(path) + ":vary" }
func (k keyspace) gen(path string) string  { return k.base + k.pathTag(path) + ":gen" }
func (k keyspace) paths() string           { return k.base + "{" + k.policy + "}:paths" }
func (k keyspace) tag(tag string) string   { return k.base + "{" + k.policy + "}:tag:" + tag }
func (k keyspace) channel() string         { return k.base + "{" + k.policy + "}:inv" }

// keyInput is everything a stored response is selected by.
type keyInput struct {
	// Method is GET for GET and HEAD: HEAD is answered from GET entries.
	Method string
	Host   string
	// Path is the escaped path, so /a%2Fb and /a/b stay distinct.
	Path  string
	Query string
	// Headers are (lower-case name, normalized value) pairs, rule varyHeaders
	// and the upstream's Vary together, sorted by name.
	Headers [][2]string
	// Subject is set only for rules with varyBySubject.
	Subject    string
	HasSubject bool
}

// hash is the variant hash of the input: 128 bits of SHA-256 over a
// length-prefixed encoding, so no two different inputs share an encoding.
func (in keyInput) hash() string {
	h := sha256.New()
	var n [4]byte
	write := func(s string) {
		binary.BigEndian.PutUint32(n[:], uint32(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	write(in.Method)
	write(strings.ToLower(in.Host))
	write(in.Path)
	write(normalizeQuery(in.Query))
	for _, kv := range in.Headers {
		write(kv[0])
		write(kv[1])
	}
	if in.HasSubject {
		write("\x00subject")
		write(in.Subject)
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// normalizeQuery sorts parameters by name (keeping the order of repeated
// names, which applications may depend on) and canonicalizes their escaping,
// so ?b=1&a=2 and ?a=2&b=1 and ?a=%32&b=1 share an entry.
func normalizeQuery(raw string) string {
	if raw == "" {
		return ""
	}
	type param struct{ name, value string }
	var ps []param
	for part := range strings.SplitSeq(raw, "&") {
		if part == "" {
			continue
		}
		name, value, _ := strings.Cut(part, "=")
		ps = append(ps, param{canonicalEscape(name), canonicalEscape(value)})
	}
	slices.SortStableFunc(ps, func(a, b param) int { return strings.Compare(a.name, b.name) })
	var b strings.Builder
	for i, p := range ps {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(p.name)
		b.WriteByte('=')
		b.WriteString(p.value)
	}
	return b.String()
}

// canonicalEscape re-escapes a query component; malformed escapes are kept
// verbatim because the upstream sees them verbatim too.
func canonicalEscape(s string) string {
	u, err := url.QueryUnescape(s)
	if err != nil {
		return s
	}
	return url.QueryEscape(u)
}

// normalizeHeaderValue joins the values of one header and collapses the
// whitespace around list separators, so "en, de" and "en,de" share an entry.
// Case is kept: header semantics differ and a false split is safer than a
// false share.
func normalizeHeaderValue(vs []string) string {
	var parts []string
	for _, v := range vs {
		for p := range strings.SplitSeq(v, ",") {
			p = strings.Join(strings.Fields(p), " ")
			if p != "" {
				parts = append(parts, p)
			}
		}
	}
	return strings.Join(parts, ",")
}

// varyPairs reads the request headers named in names (sorted, lower-case,
// de-duplicated) as key material.
func varyPairs(h http.Header, names []string) [][2]string {
	out := make([][2]string, 0, len(names))
	for _, n := range names {
		out = append(out, [2]string{n, normalizeHeaderValue(h.Values(n))})
	}
	return out
}

// headerNames lower-cases, sorts and de-duplicates header names.
func headerNames(names ...[]string) []string {
	var out []string
	for _, ns := range names {
		for _, n := range ns {
			n = strings.ToLower(strings.TrimSpace(n))
			if n != "" {
				out = append(out, n)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// parseVary returns the header names of a response's Vary and whether it
// contains "*" (which makes the response unusable for any other request).
func parseVary(h http.Header) (names []string, star bool) {
	for _, v := range h.Values("Vary") {
		for p := range strings.SplitSeq(v, ",") {
			p = strings.TrimSpace(p)
			if p == "*" {
				return nil, true
			}
			if p != "" {
				names = append(names, p)
			}
		}
	}
	return headerNames(names), false
}
