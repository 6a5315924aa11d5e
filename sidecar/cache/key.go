package cache

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// buckets is how many hash slots one policy's entries are spread over.
// Each bucket keeps its own copy of the policy's prefix and tag
// invalidations, so a lookup reads one slot and a prefix or tag
// invalidation writes a constant number of keys, however many paths and
// variants are cached.
const buckets = 256

// keyspace builds every Redis key and channel name of one policy. The layout
// (<b> the path's bucket, <ph> 64 bits of SHA-256 of the path):
//
//	<prefix>{<ns>/<policy>/<b>}:v:<varianthash>  one stored response
//	<prefix>{<ns>/<policy>/<b>}:p:<ph>           hash: the path's generation and upstream Vary spec
//	<prefix>{<ns>/<policy>/<b>}:n:<ph>           zset: the path's variant keys by store time (the variant cap)
//	<prefix>{<ns>/<policy>/<b>}:g                hash: the bucket's copy of prefix and tag invalidations
//	<prefix>{<ns>/<policy>}:inv                  invalidation broadcast channel
//
// Everything about one path shares its bucket's hash tag, so a lookup and a
// store are each a single-slot operation on a cluster.
type keyspace struct {
	prefix string // "<keyPrefix><ns>/<policy>"
	base   string // keyPrefix
	policy string // "<ns>/<policy>"
}

func newKeyspace(keyPrefix, namespace, policy string) keyspace {
	p := namespace + "/" + policy
	return keyspace{prefix: keyPrefix + p, base: keyPrefix, policy: p}
}

// pathHash is the path's bucket and 64 bits of SHA-256 of the path, hex.
func pathHash(path string) (int, string) {
	sum := sha256.Sum256([]byte(path))
	return int(sum[0]), hex.EncodeToString(sum[:8])
}

// bucketOf is the path's bucket (pathHash without the hex).
func bucketOf(path string) int {
	sum := sha256.Sum256([]byte(path))
	return int(sum[0])
}

// bucketTag is the hash tag of bucket b.
func (k keyspace) bucketTag(b int) string {
	return "{" + k.policy + "/" + strconv.FormatInt(int64(b), 16) + "}"
}

// pathTag is the hash tag shared by all keys of one path: its bucket's.
func (k keyspace) pathTag(path string) string { return k.bucketTag(bucketOf(path)) }

func (k keyspace) variant(path, variantHash string) string {
	return k.variantBase(path) + variantHash
}

// variantBase is the start of every variant key of path.
func (k keyspace) variantBase(path string) string { return k.base + k.pathTag(path) + ":v:" }

func (k keyspace) meta(path string) string {
	b, h := pathHash(path)
	return k.base + k.bucketTag(b) + ":p:" + h
}

func (k keyspace) variants(path string) string {
	b, h := pathHash(path)
	return k.base + k.bucketTag(b) + ":n:" + h
}

func (k keyspace) gens(b int) string         { return k.base + k.bucketTag(b) + ":g" }
func (k keyspace) channel() string           { return k.base + "{" + k.policy + "}:inv" }
func (k keyspace) localVary(p string) string { return k.meta(p) + ":vary" }

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
// It is computed on every cacheable request: the encoding is built in a
// buffer on the stack when it fits, and hashed in one call.
func (in keyInput) hash() string {
	var buf [512]byte
	b := buf[:0]
	write := func(s string) {
		b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
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
	sum := sha256.Sum256(b)
	var out [32]byte
	hex.Encode(out[:], sum[:16])
	return string(out[:])
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

// normalizeHost is the Host as keys compare it: lower case, without the
// trailing dot of a fully qualified name or http's default port.
func normalizeHost(h string) string {
	h = strings.ToLower(h)
	h = strings.TrimSuffix(h, ":80")
	return strings.TrimSuffix(h, ".")
}

// maxHints bounds the Vary specs a sidecar remembers.
const maxHints = 4096

// varyHints remembers the upstream Vary spec last seen for each path, so a
// lookup reads the right variant in its first round trip. A wrong or
// missing hint costs a second read, never a wrong answer: the spec Redis
// returns decides.
type varyHints struct {
	mu sync.Mutex
	m  map[string][]string
}

func newVaryHints() *varyHints { return &varyHints{m: map[string][]string{}} }

func (h *varyHints) get(path string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.m[path]
}

func (h *varyHints) set(path string, vary []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(vary) == 0 {
		delete(h.m, path)
		return
	}
	if len(h.m) >= maxHints {
		clear(h.m) // cheap and bounded; hints are rebuilt by the next lookups
	}
	h.m[path] = vary
}
