package redisconf

import (
	"fmt"
	"strings"
)

// AuthConf is the redis.conf snippet that sets a node's password and the
// password it uses towards its primary. The operator ships it in a Secret
// that redis-server reads with --include, so the password never appears on
// a command line, where every user of the node could read it (ps,
// /proc/<pid>/cmdline).
func AuthConf(password string) string {
	q := Quote(password)
	return "requirepass " + q + "\nmasterauth " + q + "\n"
}

// Quote writes s as a redis.conf double-quoted string, which redis-server
// splits with sdssplitargs: backslash and double quote are escaped, and
// every byte outside printable ASCII is written as \xHH, so any password
// (spaces, quotes, newlines, UTF-8) reads back byte for byte.
func Quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := range len(s) {
		switch c := s[i]; {
		case c == '\\' || c == '"':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c >= 0x7f:
			fmt.Fprintf(&b, `\x%02x`, c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}
