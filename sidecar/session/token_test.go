package session

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehouse-dev/gatehouse/sidecar/config"
)

// validToken is a fixed, well-formed token for table tests.
var validToken = token{
	id:     [idLen]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
	secret: [secretLen]byte{31: 0xff},
}

// legacyToken is a gh1 token, as issued before subject buckets.
var legacyToken = token{
	legacy: true,
	id:     [idLen]byte{0xff, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
	secret: [secretLen]byte{31: 0xfe},
}

func TestParseToken(t *testing.T) {
	good := validToken.String()
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"issued token", good, true},
		{"gh1 token, issued before", legacyToken.String(), true},
		{"empty", "", false},
		{"prefix only", tokenPrefix, false},
		{"unknown version", "gh3." + good[4:], false},
		{"bucket out of range", tokenPrefix + "wAAAAAAAAAAAAAAAAAAAAA" + good[len(tokenPrefix)+idB64Len:], false},
		{"upper-case prefix", "GH1." + good[4:], false},
		{"one char short", good[:len(good)-1], false},
		{"one char long", good + "A", false},
		{"separator moved", good[:25] + good[26:27] + "." + good[27:], false},
		{"standard base64 alphabet", strings.Replace(good, good[5:6], "+", 1), false},
		{"padding", good[:len(good)-1] + "=", false},
		// The last character of a 32-byte encoding carries 4 payload bits;
		// setting a low bit gives a second spelling of the same secret.
		{"non-canonical trailing bits", good[:len(good)-1] + string(good[len(good)-1]+1), false},
		{"space inside", good[:10] + " " + good[11:], false},
		{"newline inside", good[:10] + "\n" + good[11:], false},
		{"bearer still attached", "Bearer " + good[7:], false},
		{"jwt shaped", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseToken(tc.in)
			if (err == nil) != tc.ok {
				t.Fatalf("parseToken(%q) error = %v, want ok=%v", tc.in, err, tc.ok)
			}
			if tc.ok {
				if diff := cmp.Diff(tc.in, got.String()); diff != "" {
					t.Errorf("round trip (-want +got):\n%s", diff)
				}
			}
		})
	}
}

func TestNewTokenIsRandomAndParses(t *testing.T) {
	seen := map[string]bool{}
	for i := range 100 {
		tok, err := newToken(uint16(i * 163))
		if err != nil {
			t.Fatal(err)
		}
		s := tok.String()
		if len(s) != TokenLen || !strings.HasPrefix(s, tokenPrefix) {
			t.Fatalf("token %q has the wrong shape", s)
		}
		back, err := parseToken(s)
		if err != nil {
			t.Fatalf("parse issued token %q: %v", s, err)
		}
		if back != tok {
			t.Fatalf("parse(%q) = %v, want %v", s, back, tok)
		}
		if tok.legacy || tok.bucket() != uint16(i*163) {
			t.Fatalf("token %q: legacy %v, bucket %d; want gh2 in bucket %d", s, tok.legacy, tok.bucket(), i*163)
		}
		if seen[s] {
			t.Fatalf("token %q issued twice", s)
		}
		seen[s] = true
	}
}

func TestSealBindsKeyAndSecret(t *testing.T) {
	tok, err := newToken(7)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := tok.seal("auth:ctx:ns:p:s:A", []byte(`{"sub":"alice"}`))
	if err != nil {
		t.Fatal(err)
	}
	pt, err := tok.open("auth:ctx:ns:p:s:A", sealed)
	if err != nil {
		t.Fatalf("open with the right key name: %v", err)
	}
	if diff := cmp.Diff(`{"sub":"alice"}`, string(pt)); diff != "" {
		t.Errorf("plaintext (-want +got):\n%s", diff)
	}
	if _, err := tok.open("auth:ctx:ns:p:s:B", sealed); err == nil {
		t.Error("a payload moved under another key name decrypted")
	}
	other := tok
	other.secret[0] ^= 1
	if _, err := other.open("auth:ctx:ns:p:s:A", sealed); err == nil {
		t.Error("a payload decrypted with another secret")
	}
	tampered := append([]byte(nil), sealed...)
	tampered[len(tampered)-1] ^= 1
	if _, err := tok.open("auth:ctx:ns:p:s:A", tampered); err == nil {
		t.Error("a tampered payload decrypted")
	}
	for _, short := range [][]byte{nil, {payloadVersion}, sealed[:20]} {
		if _, err := tok.open("auth:ctx:ns:p:s:A", short); err == nil {
			t.Errorf("a %d-byte value decrypted", len(short))
		}
	}
}

// FuzzParseToken checks that parsing never panics and accepts only the
// canonical spelling of a token: whatever parses must print back exactly.
func FuzzParseToken(f *testing.F) {
	f.Add(validToken.String())
	f.Add("")
	f.Add("gh1.")
	f.Add("Bearer gh1.AQIDBAUGBwgJCgsMDQ4PEA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAP8")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := parseToken(s)
		if err != nil {
			return
		}
		if got := tok.String(); got != s {
			t.Fatalf("parseToken accepted %q, which prints as %q", s, got)
		}
	})
}

// TestKeyForMatchesSessionKey pins the allocation-lean request-path key
// builder to the plain one the admin paths use; if they drifted, revoked
// sessions would stay valid. It also pins the documented key formulas
// (docs/sessions.md), which existing sessions depend on.
func TestKeyForMatchesSessionKey(t *testing.T) {
	m, err := newOffline(t, config.SessionPolicy{PolicyMeta: config.PolicyMeta{Namespace: "ns", Name: "p"}})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := newToken(m.bucketOf("alice"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tk := range []token{tok, legacyToken} {
		if diff := cmp.Diff(m.sessionKey(tk), m.keyFor(tk)); diff != "" {
			t.Errorf("keyFor (-sessionKey +keyFor):\n%s", diff)
		}
	}
	subject := sha256.Sum256([]byte("gatehouse subject v1\x00auth:ctx:ns:p:\x00alice"))
	bucket := fmt.Sprintf("%04x", binary.BigEndian.Uint16(subject[:2])%(1<<14))
	idSum := sha256.Sum256(append([]byte("gatehouse session id v1\x00"), tok.id[:]...))
	legacySum := sha256.Sum256(append([]byte("gatehouse session id v1\x00"), legacyToken.id[:]...))
	enc := base64.RawURLEncoding.EncodeToString
	want := map[string]string{
		"session":      "auth:ctx:ns:p:{" + bucket + "}:s:" + enc(idSum[:]),
		"index":        "auth:ctx:ns:p:{" + bucket + "}:u:" + enc(subject[:]),
		"gh1 session":  "auth:ctx:ns:p:s:" + enc(legacySum[:]),
		"gh1 index":    "auth:ctx:ns:p:u:" + enc(subject[:]),
		"token bucket": bucket,
	}
	got := map[string]string{
		"session":      m.keyFor(tok),
		"index":        m.indexKey("alice"),
		"gh1 session":  m.keyFor(legacyToken),
		"gh1 index":    m.legacyIndexKey("alice"),
		"token bucket": fmt.Sprintf("%04x", tok.bucket()),
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("keys (-documented +built):\n%s", diff)
	}
}
