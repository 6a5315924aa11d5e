package session

import (
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

func TestParseToken(t *testing.T) {
	good := validToken.String()
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"issued token", good, true},
		{"empty", "", false},
		{"prefix only", tokenPrefix, false},
		{"wrong version", "gh2." + good[4:], false},
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
				if diff := cmp.Diff(validToken.String(), got.String()); diff != "" {
					t.Errorf("round trip (-want +got):\n%s", diff)
				}
			}
		})
	}
}

func TestNewTokenIsRandomAndParses(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		tok, err := newToken()
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
		if seen[s] {
			t.Fatalf("token %q issued twice", s)
		}
		seen[s] = true
	}
}

func TestSealBindsKeyAndSecret(t *testing.T) {
	tok, err := newToken()
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
// sessions would stay valid.
func TestKeyForMatchesSessionKey(t *testing.T) {
	m, err := newOffline(t, config.SessionPolicy{PolicyMeta: config.PolicyMeta{Namespace: "ns", Name: "p"}})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := newToken()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(m.sessionKey(tok.idHash()), m.keyFor(tok)); diff != "" {
		t.Errorf("keyFor (-sessionKey +keyFor):\n%s", diff)
	}
	if !strings.HasPrefix(m.keyFor(tok), "auth:ctx:ns:p:s:") {
		t.Errorf("key %q lacks the default prefix, namespace and policy", m.keyFor(tok))
	}
}
