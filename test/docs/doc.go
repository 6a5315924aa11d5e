// Package docs runs the documentation: the examples in docs/*.md that a
// reader would copy are executed against the real gatehouse-sidecar binary,
// a real redis-server (standalone and a 3+3 cluster) and the example app
// (hack/echo), and what each command prints must be what the page shows.
// An example that stops working fails `make test`; so does one whose shown
// output is no longer true.
//
// A page marks its runnable blocks with an HTML comment on the line before
// the fence, which renders as nothing:
//
//	<!-- docs-test: config NAME [labels=k=v,k2=v2] -->   before a ```json block
//	<!-- docs-test: run NAME -->                         before a ```console block
//
// A config block is a sidecar configuration document. The harness starts
// one sidecar for it (--config with the block, --pod-labels with the
// labels, if any) in front of hack/echo, with its redis[] addrs replaced by
// the test's own servers: Standalone connections get a redis-server,
// Cluster connections a formed 3+3 cluster, Sentinel ones are left as they
// are (the test has no Sentinel, so no selected policy may use one). A
// connection's username is an ACL user on those servers and its
// passwordEnv variable holds that user's password. Every config block must
// load.
//
// A run block is a terminal session against the sidecar of config NAME
// (NAME "absent": a sidecar whose config file does not exist). Lines
// starting with "$ " are commands, run by bash, one shell per config, in
// page order, so a variable set in one block is there in the next; a
// trailing "\" continues a command on the next line. The sidecar answers
// on the addresses a sidecar started by hand has, localhost:8080 (data)
// and localhost:9901 (admin): curl is wrapped to reach the one under test
// there. The lines after a command, up to the next one, are its output
// (stdout and stderr): each must equal a line the command printed, in
// order, where "…" inside a line matches any text and a line that is only
// "…" matches any number of lines. Trailing spaces and CRs do not count.
//
// docs/sessions.md's key formula and worked example are checked by
// TestSessionKeysAreAsDocumented, through the real admin API and
// `redis-cli --scan`.
package docs
