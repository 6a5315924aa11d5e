package proxy

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestClientIP(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	tests := []struct {
		name   string
		remote string
		xff    []string
		want   string
	}{
		{name: "untrusted peer ignores XFF", remote: "203.0.113.7:5555", xff: []string{"1.2.3.4"}, want: "203.0.113.7"},
		{name: "untrusted peer without XFF", remote: "203.0.113.7:5555", want: "203.0.113.7"},
		{name: "trusted peer without XFF is the client", remote: "10.0.0.1:5555", want: "10.0.0.1"},
		{name: "trusted peer, one hop", remote: "10.0.0.1:5555", xff: []string{"198.51.100.9"}, want: "198.51.100.9"},
		{name: "client-forged entries left of the real client are ignored", remote: "10.0.0.1:5555", xff: []string{"6.6.6.6, 198.51.100.9"}, want: "198.51.100.9"},
		{name: "trusted hops are skipped right to left", remote: "10.0.0.1:5555", xff: []string{"6.6.6.6, 198.51.100.9, 10.1.1.1, 10.2.2.2"}, want: "198.51.100.9"},
		{name: "several XFF header lines form one list", remote: "10.0.0.1:5555", xff: []string{"6.6.6.6, 198.51.100.9", "10.1.1.1"}, want: "198.51.100.9"},
		{name: "all hops trusted: leftmost", remote: "10.0.0.1:5555", xff: []string{"10.9.9.9, 10.1.1.1"}, want: "10.9.9.9"},
		{name: "garbage stops at last trusted hop", remote: "10.0.0.1:5555", xff: []string{"198.51.100.9, garbage, 10.1.1.1"}, want: "10.1.1.1"},
		{name: "garbage right after peer keeps peer", remote: "10.0.0.1:5555", xff: []string{"1.2.3.4, unknown"}, want: "10.0.0.1"},
		{name: "empty entries are skipped", remote: "10.0.0.1:5555", xff: []string{"198.51.100.9, ,"}, want: "198.51.100.9"},
		{name: "entries with ports", remote: "10.0.0.1:5555", xff: []string{"198.51.100.9:1234"}, want: "198.51.100.9"},
		{name: "IPv6 peer and hops", remote: "[fd00::1]:5555", xff: []string{"2001:db8::5, fd12::3"}, want: "2001:db8::5"},
		{name: "bracketed IPv6 hop with port", remote: "[fd00::1]:5555", xff: []string{"[2001:db8::5]:443"}, want: "2001:db8::5"},
		{name: "IPv4-mapped peer matches IPv4 CIDR", remote: "[::ffff:10.0.0.1]:5555", xff: []string{"198.51.100.9"}, want: "198.51.100.9"},
		{name: "IPv4-mapped client is unmapped", remote: "[::ffff:203.0.113.7]:1", want: "203.0.113.7"},
		{name: "unparsable peer", remote: "pipe", xff: []string{"1.2.3.4"}, want: "invalid IP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := clientIP(tt.remote, tt.xff, trusted)
			if diff := cmp.Diff(tt.want, got.String()); diff != "" {
				t.Errorf("clientIP(%q, %q) (-want +got):\n%s", tt.remote, tt.xff, diff)
			}
		})
	}
}

func TestParseLabels(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    map[string]string
		wantErr bool
	}{
		{name: "empty", in: "", want: map[string]string{}},
		{
			name: "downward API format",
			in:   "app=\"web\"\ngatehouse.dev/inject=\"true\"\npod-template-hash=\"7d4b9c\"\n",
			want: map[string]string{"app": "web", "gatehouse.dev/inject": "true", "pod-template-hash": "7d4b9c"},
		},
		{name: "escaped value", in: `note="a \"quoted\" = value"`, want: map[string]string{"note": `a "quoted" = value`}},
		{name: "empty value", in: `canary=""`, want: map[string]string{"canary": ""}},
		{name: "blank lines", in: "\n\napp=\"web\"\n\n", want: map[string]string{"app": "web"}},
		{name: "unquoted value", in: "app=web", wantErr: true},
		{name: "no equals", in: "app", wantErr: true},
		{name: "no key", in: `="x"`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseLabels([]byte(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseLabels error = %v, wantErr %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); !tt.wantErr && diff != "" {
				t.Errorf("parseLabels (-want +got):\n%s", diff)
			}
		})
	}
}
