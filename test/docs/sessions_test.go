package docs

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehouse-dev/gatehouse/internal/redistest"
)

// b64 is B64 of docs/sessions.md: base64url without padding.
var b64 = base64.RawURLEncoding

// keyFormula is docs/sessions.md's key formula, read from the page: the
// hash labels and how each key is assembled, so what the page says is what
// is compared with Redis.
type keyFormula struct {
	lines map[string]string // name → right-hand side, as written
}

func readKeyFormula(t *testing.T) keyFormula {
	t.Helper()
	f := keyFormula{lines: map[string]string{}}
	for _, b := range blocks(t, "../../docs/sessions.md") {
		if b.kind != "session-key-formula" {
			continue
		}
		for l := range strings.SplitSeq(b.body, "\n") {
			if name, rhs, ok := strings.Cut(l, " = "); ok {
				f.lines[strings.TrimSpace(name)] = strings.TrimSpace(rhs)
			}
		}
	}
	for _, n := range []string{"base", "subjecthash", "bucket", "idhash", "session key", "index key"} {
		if f.lines[n] == "" {
			t.Fatalf("docs/sessions.md's key formula has no %q line", n)
		}
	}
	// The one line that is prose rather than an expression.
	if got, want := f.lines["bucket"], "(subjecthash[0] × 256 + subjecthash[1]) mod 16384, as 4 lower-case hex digits"; got != want {
		t.Fatalf("the bucket line reads %q; this test computes %q", got, want)
	}
	return f
}

// eval computes one line: "+" joins strings (quoted literals, names, and
// B64(name)); SHA-256(… ‖ …) hashes "quoted" literals, \0 and names.
func (f keyFormula) eval(t *testing.T, name string, env map[string][]byte) []byte {
	t.Helper()
	rhs := f.lines[name]
	term := func(s string) []byte {
		switch {
		case s == `\0`:
			return []byte{0}
		case strings.HasPrefix(s, `"`):
			v, err := strconv.Unquote(s)
			if err != nil {
				t.Fatalf("%s: bad literal %s", name, s)
			}
			return []byte(v)
		case strings.HasPrefix(s, "B64(") && strings.HasSuffix(s, ")"):
			return []byte(b64.EncodeToString(env[s[4:len(s)-1]]))
		}
		v, ok := env[s]
		if !ok {
			t.Fatalf("%s: unknown name %q in %q", name, s, rhs)
		}
		return v
	}
	if inner, ok := strings.CutPrefix(rhs, "SHA-256("); ok {
		var in []byte
		for p := range strings.SplitSeq(strings.TrimSuffix(inner, ")"), " ‖ ") {
			in = append(in, term(p)...)
		}
		sum := sha256.Sum256(in)
		return sum[:]
	}
	var out []byte
	for p := range strings.SplitSeq(rhs, " + ") {
		out = append(out, term(p)...)
	}
	return out
}

// keys computes, by the page's formula, the keys of a session of subject
// with token under keyPrefix/namespace/policy.
func (f keyFormula) keys(t *testing.T, keyPrefix, namespace, policy, subject, token string) map[string]string {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 || parts[0] != "gh2" {
		t.Fatalf("token %q is not gh2.<id>.<secret>", token)
	}
	id, err := b64.Strict().DecodeString(parts[1])
	if err != nil || len(id) != 16 {
		t.Fatalf("token id %q: %v (%d bytes)", parts[1], err, len(id))
	}
	env := map[string][]byte{"keyPrefix": []byte(keyPrefix), "namespace": []byte(namespace), "policy": []byte(policy), "subject": []byte(subject), "id": id}
	env["base"] = f.eval(t, "base", env)
	env["subjecthash"] = f.eval(t, "subjecthash", env)
	env["bucket"] = fmt.Appendf(nil, "%04x", (int(env["subjecthash"][0])*256+int(env["subjecthash"][1]))%16384)
	env["idhash"] = f.eval(t, "idhash", env)
	return map[string]string{
		"base":        string(env["base"]),
		"subjecthash": hex.EncodeToString(env["subjecthash"]),
		"bucket":      string(env["bucket"]),
		"id":          hex.EncodeToString(id),
		"idhash":      hex.EncodeToString(env["idhash"]),
		"session key": string(f.eval(t, "session key", env)),
		"index key":   string(f.eval(t, "index key", env)),
	}
}

var exampleLine = regexp.MustCompile(`^([a-zA-Z][a-zA-Z ]*?)\s{2,}(\S+)$`)

// TestSessionKeysAreAsDocumented holds docs/sessions.md to the keys in
// Redis. First the page's worked example must be what its formula gives;
// then sessions minted through the real sidecar's admin API, on a real
// redis-server and on a real 3+3 cluster, must leave exactly the keys the
// formula gives for the tokens they returned, as `redis-cli --scan` lists
// them, the index holding B64(idhash) scored by the expiry. A review that
// tried four readings of the previous wording found none that gave the
// stored key.
func TestSessionKeysAreAsDocumented(t *testing.T) {
	f := readKeyFormula(t)
	ex := map[string]string{}
	for _, b := range blocks(t, "../../docs/sessions.md") {
		if b.kind != "session-key-example" {
			continue
		}
		for l := range strings.SplitSeq(b.body, "\n") {
			if m := exampleLine.FindStringSubmatch(l); m != nil {
				ex[m[1]] = m[2]
			}
		}
	}
	got := f.keys(t, ex["keyPrefix"], ex["namespace"], ex["policy"], ex["subject"], ex["token"])
	want := map[string]string{}
	for k := range got {
		want[k] = ex[k]
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("docs/sessions.md's worked example (-page +formula):\n%s", diff)
	}
	if !strings.HasPrefix(got["id"], got["bucket"]) {
		t.Errorf("the example token's id %s does not start with its bucket %s", got["id"], got["bucket"])
	}

	subjects := []string{ex["subject"], "bob@example.com"}
	config := func(mode string, addrs []string) []byte {
		a, _ := json.Marshal(addrs)
		// keyPrefix omitted: the page says it defaults to the example's.
		return fmt.Appendf(nil, `{"apiVersion":"sidecar.gatehouse.dev/v1alpha1","kind":"SidecarConfig",
			"redis":[{"name":"main","mode":%q,"addrs":%s}],
			"sessions":[{"namespace":%q,"name":%q,"redis":"main","ttl":"1h"}]}`, mode, a, ex["namespace"], ex["policy"])
	}
	standalone := redistest.StartStandalone(t)
	cluster := redistest.StartCluster(t)
	for _, tt := range []struct {
		name  string
		doc   []byte
		nodes []*redistest.Server
	}{
		{"standalone", config("Standalone", []string{standalone.Addr()}), []*redistest.Server{standalone}},
		{"cluster", config("Cluster", cluster.Addrs()), cluster.Primaries},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := startSidecar(t, tt.doc, nil, "")
			want := map[string]string{} // key → node
			scores := map[string]string{}
			for _, subject := range subjects {
				token, expires := createSession(t, s, subject)
				k := f.keys(t, ex["keyPrefix"], ex["namespace"], ex["policy"], subject, token)
				want[k["session key"]], want[k["index key"]] = "", ""
				idhash, _ := hex.DecodeString(k["idhash"])
				scores[k["index key"]] = b64.EncodeToString(idhash) + " " + strconv.FormatInt(expires.UnixMilli(), 10)
			}
			found := map[string]string{}
			for _, n := range tt.nodes {
				for key := range strings.FieldsSeq(redistest.RedisCLI(t, "-p", strconv.Itoa(n.Port), "--scan")) {
					found[key] = n.Addr()
				}
			}
			if diff := cmp.Diff(slices.Sorted(maps.Keys(want)), slices.Sorted(maps.Keys(found))); diff != "" {
				t.Fatalf("keys in Redis (-docs/sessions.md +redis-cli --scan):\n%s", diff)
			}
			for idx, member := range scores {
				node := found[idx]
				_, port, _ := strings.Cut(node, ":")
				out := strings.Fields(redistest.RedisCLI(t, "-p", port, "zrange", idx, "0", "-1", "withscores"))
				if got := strings.Join(out, " "); got != member {
					t.Errorf("index %s holds %q, want %q (B64(idhash) and the expiry in Unix ms)", idx, got, member)
				}
			}
			// A subject's keys share one slot, so one node: the hash tag.
			for _, subject := range subjects {
				var nodes []string
				for key, node := range found {
					if strings.Contains(key, "{"+bucketOf(t, f, ex, subject)+"}") {
						nodes = append(nodes, node)
					}
				}
				if slices.Sort(nodes); len(slices.Compact(nodes)) != 1 {
					t.Errorf("the keys of %s live on %v, want one node", subject, nodes)
				}
			}
		})
	}
}

func bucketOf(t *testing.T, f keyFormula, ex map[string]string, subject string) string {
	// Any gh2 token computes the subject's bucket; the id does not enter it.
	return f.keys(t, ex["keyPrefix"], ex["namespace"], ex["policy"], subject, ex["token"])["bucket"]
}

// createSession mints a session through the admin API, as the app does.
func createSession(t *testing.T, s *sidecar, subject string) (string, time.Time) {
	t.Helper()
	resp, err := http.Post("http://"+s.admin+"/v1/sessions", "application/json", strings.NewReader(fmt.Sprintf(`{"subject":%q}`, subject)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Token     string    `json:"token"`
		ExpiresAt time.Time `json:"expiresAt"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("create session: %d %v", resp.StatusCode, err)
	}
	return out.Token, out.ExpiresAt
}
