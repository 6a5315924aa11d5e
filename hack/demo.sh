#!/usr/bin/env bash
# Runs the local demo (`make demo`) or, with --check, the end-to-end test
# (`make demo-check`). Everything runs on loopback; see docs/demo.md.
#
# It sets up what is missing (redis-server from the OS packages, the envtest
# binaries built from the Kubernetes Go modules), builds the sidecar and the
# demo program into a temporary directory, and runs the demo with the
# arguments given (--check, --keep-temp, --timeout=…). The demo stops every
# process it started on exit, failure or Ctrl-C; this script removes the
# binaries.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

"$ROOT/hack/install-redis.sh"
ASSETS="$("$ROOT/hack/envtest-assets.sh")"

bin="$(mktemp -d "${TMPDIR:-/tmp}/gatehouse-demo-bin.XXXXXX")"
trap 'rm -rf "$bin"' EXIT

echo "demo: building gatehouse-sidecar and the demo" >&2
CGO_ENABLED=0 go build -o "$bin/gatehouse-sidecar" ./cmd/sidecar
go build -o "$bin/demo" ./hack/demo

# Not exec: the EXIT trap must still remove the binaries. A Ctrl-C reaches
# the demo (same foreground process group), which shuts down in order.
status=0
"$bin/demo" --root "$ROOT" --assets "$ASSETS" --sidecar-bin "$bin/gatehouse-sidecar" "$@" || status=$?
exit "$status"
