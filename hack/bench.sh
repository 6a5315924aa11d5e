#!/usr/bin/env bash
# `make bench`: measures the sidecar against its peers on loopback and
# rewrites the generated block of docs/benchmarks.md (hack/bench/main.go
# explains what runs). Takes about 6-8 minutes with the defaults.
#
# Knobs (environment): BENCH_DURATION (5s), BENCH_REPS (3), BENCH_CONNECTIONS
# (32), BENCH_THREADS (2), BENCH_WARMUP (1s), BENCH_ONLY (regexp of
# configurations, for development), BENCH_OUT (docs/benchmarks.md),
# BENCH_SUITE (all; http for the wrk rows only; h2c for the gRPC rows only,
# about a minute), BENCH_H2_CLIENTS (8) and BENCH_H2_STREAMS (8) for h2load,
# BENCH_ERL (the envoyproxy/ratelimit service binary for the
# Redis-cost-per-decision comparison, docs/benchmarks.md; by default built
# from its Go module at ERL_VERSION and cached in ~/.cache/gatehouse/bench;
# "none" leaves its rows out).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:${PATH}"

hack/install-redis.sh

# wrk, nginx and h2load come from the OS packages, like redis.
suite="${BENCH_SUITE:-all}"
missing=()
if [[ "${suite}" != h2c ]]; then
	command -v wrk >/dev/null || missing+=(wrk)
	command -v nginx >/dev/null || missing+=(nginx-light)
fi
if [[ "${suite}" != http ]]; then
	command -v h2load >/dev/null || missing+=(nghttp2-client)
fi
if ((${#missing[@]})); then
	if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null; then
		echo "bench: missing ${missing[*]}: install with 'sudo apt-get install -y ${missing[*]}', then retry" >&2
		exit 1
	fi
	echo "bench: installing ${missing[*]} from the OS packages" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >&2
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
	# The package may start a system nginx on :80; the benchmark runs its own.
	if command -v systemctl >/dev/null; then systemctl disable --now nginx >/dev/null 2>&1 || true; fi
fi

# envoyproxy/ratelimit, the peer whose Redis cost per decision the issue
# compares against, built from the Go module proxy like the envtest assets.
ERL_VERSION="v1.4.1-0.20260122083618-3fb702589d36"
erl="${BENCH_ERL:-}"
if [[ -z "${erl}" && "${suite}" != h2c ]]; then
	erl="${HOME}/.cache/gatehouse/bench/envoy-ratelimit-${ERL_VERSION}"
	if [[ ! -x "${erl}" ]]; then
		echo "bench: building envoyproxy/ratelimit ${ERL_VERSION} (once)" >&2
		erltmp="$(mktemp -d)"
		GOBIN="${erltmp}" GOFLAGS=-mod=mod go install "github.com/envoyproxy/ratelimit/src/service_cmd@${ERL_VERSION}"
		mkdir -p "$(dirname "${erl}")"
		mv "${erltmp}/service_cmd" "${erl}"
		rm -rf "${erltmp}"
	fi
fi
[[ "${erl}" == none ]] && erl=""

bindir="$(mktemp -d)"
trap 'rm -rf "${bindir}"' EXIT
# Built exactly as `make build` builds the shipped binary.
CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o "${bindir}/gatehouse-sidecar" ./cmd/sidecar
go build -o "${bindir}/bench" ./hack/bench

"${bindir}/bench" run \
	--sidecar "${bindir}/gatehouse-sidecar" \
	--erl "${erl}" \
	--out "${BENCH_OUT:-docs/benchmarks.md}" \
	--duration "${BENCH_DURATION:-5s}" \
	--warmup "${BENCH_WARMUP:-1s}" \
	--reps "${BENCH_REPS:-3}" \
	--connections "${BENCH_CONNECTIONS:-32}" \
	--threads "${BENCH_THREADS:-2}" \
	--only "${BENCH_ONLY:-}" \
	--suite "${suite}" \
	--h2-clients "${BENCH_H2_CLIENTS:-8}" \
	--h2-streams "${BENCH_H2_STREAMS:-8}" \
	--command "$([[ "${suite}" == all ]] && echo "make bench" || echo "BENCH_SUITE=${suite} make bench")"
