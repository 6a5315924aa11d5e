// Package reliability holds the sidecar's reliability suite (run it with
// `make test-reliability` or `go test ./test/reliability/`): two real
// gatehouse-sidecar processes in front of one app, on a real 3+3 Redis
// Cluster, under steady load while Redis primaries die, Redis disappears,
// configs get corrupted, sidecars are terminated and clients hang up. It
// prints a table of what it tried and what was lost; docs/reliability.md
// explains each scenario and what its failure mode allows.
package reliability
