package main

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseLDD(t *testing.T) {
	tests := []struct {
		name, out string
		want      []string
	}{
		{
			name: "Debian's redis-server",
			out: "\tlinux-vdso.so.1 (0x00007f27dbce2000)\n" +
				"\tlibatomic.so.1 => /lib/x86_64-linux-gnu/libatomic.so.1 (0x00007f27dbcc7000)\n" +
				"\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f27db2a5000)\n" +
				"\t/lib64/ld-linux-x86-64.so.2 (0x00007f27dbce4000)\n",
			want: []string{"/lib/x86_64-linux-gnu/libatomic.so.1", "/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"},
		},
		{
			// A library ldd cannot find must not become a path in the image.
			name: "unresolved library",
			out:  "\tlibmissing.so.1 => not found\n\tlibm.so.6 => /lib/x86_64-linux-gnu/libm.so.6 (0x1)\n",
			want: []string{"/lib/x86_64-linux-gnu/libm.so.6"},
		},
		{name: "static binary", out: "\tnot a dynamic executable\n", want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, parseLDD(tt.out)); diff != "" {
				t.Errorf("parseLDD (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRedisVersion(t *testing.T) {
	for out, want := range map[string]string{
		"Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64 build=ae4d7c971a948f0\n": "7.0.15",
		"something else\n": "unknown",
	} {
		if got := redisVersion(out); got != want {
			t.Errorf("redisVersion(%q) = %q, want %q", out, got, want)
		}
	}
}
