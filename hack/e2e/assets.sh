#!/usr/bin/env bash
# Prints a directory holding every binary of the e2e cluster:
#   etcd, kube-apiserver, kubectl               (as for envtest)
#   kubelet, kube-controller-manager,
#   kube-scheduler, kube-proxy                  (the node and the control loops)
#   coredns                                     (cluster DNS)
#
# Nothing is downloaded but Go modules: the Kubernetes binaries are built from
# k8s.io/kubernetes at the version that matches k8s.io/api in go.mod (the way
# hack/envtest-assets.sh builds kube-apiserver), CoreDNS from its own module,
# etcd is the envtest one. Every Kubernetes binary is stamped with its real
# version (-X on k8s.io/component-base/version and k8s.io/client-go/pkg/version):
# built from the module they would report v0.0.0-master+$Format:%H$, which
# `kubectl version` cannot parse and which the kubelet would report as its
# node's version.
#
# The result is cached in ${XDG_CACHE_HOME:-$HOME/.cache}/gatehouse/e2e/<version>;
# a cold build takes about 11 minutes on 2 cores (kubelet ~5 min,
# kube-controller-manager ~3, CoreDNS ~2.5), then nothing. The compile flags
# are the envtest build's (CGO_ENABLED=0, -ldflags=-s -w plus -X, no
# -trimpath) so both share Go's build cache.
#
# Progress goes to stderr; stdout carries only the directory.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
COREDNS_VERSION="${COREDNS_VERSION:-v1.15.0}"
K8S_BINARIES=(kube-apiserver kubectl kubelet kube-controller-manager kube-scheduler kube-proxy)

api_version="$(cd "$ROOT" && go list -m -f '{{.Version}}' k8s.io/api)"
k8s_version="v1${api_version#v0}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/gatehouse/e2e/${k8s_version#v}"

missing=()
for b in "${K8S_BINARIES[@]}" coredns etcd; do
	[[ -x "$cache/$b" ]] || missing+=("$b")
done
if ((${#missing[@]} == 0)); then
	echo "$cache"
	exit 0
fi

log() { echo "e2e-assets: $*" >&2; }
mkdir -p "$cache"
work="$(mktemp -d "${cache}/.build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bin"

export GOFLAGS=-mod=mod
export CGO_ENABLED=0

want() { [[ " ${missing[*]} " == *" $1 "* ]]; }

# --- etcd: the envtest build ---------------------------------------------------
if want etcd; then
	envtest="$("$ROOT/hack/envtest-assets.sh")"
	cp "$envtest/etcd" "$work/bin/etcd"
fi

# --- Kubernetes from k8s.io/kubernetes -----------------------------------------
k8s_wanted=()
for b in "${K8S_BINARIES[@]}"; do
	if want "$b"; then k8s_wanted+=("$b"); fi
done
if ((${#k8s_wanted[@]} > 0)); then
	log "building ${k8s_wanted[*]} ${k8s_version} (a cold build takes about 10 minutes)"
	mkdir -p "$work/k8s"
	(
		cd "$work/k8s"
		go mod init gatehouse.local/e2e-k8s >/dev/null 2>&1
		download="$(go mod download -json "k8s.io/kubernetes@${k8s_version}")"
		gomod="$(sed -n 's/.*"GoMod": "\(.*\)",*/\1/p' <<<"$download")"
		info="$(sed -n 's/.*"Info": "\(.*\)",*/\1/p' <<<"$download")"
		# k8s.io/kubernetes replaces its k8s.io/* dependencies with ./staging
		# paths, which only exist in its own repository: use the published
		# modules at the matching v0 version instead.
		{
			echo "require k8s.io/kubernetes ${k8s_version}"
			sed -n 's#^[[:space:]]*\(k8s.io/[^[:space:]]*\) => ./staging/src/.*#replace \1 => \1 '"${api_version}"'#p' "$gomod"
		} >>go.mod
		{
			echo '//go:build tools'
			echo
			echo 'package tools'
			echo
			echo 'import ('
			for b in "${K8S_BINARIES[@]}"; do echo "	_ \"k8s.io/kubernetes/cmd/$b\""; done
			echo ')'
		} >tools.go
		go mod tidy >&2
		# The release time from the module proxy stands in for the build date,
		# so the stamp is the same on every machine.
		released="$(sed -n 's/.*"Time":"\([^"]*\)".*/\1/p' "$info")"
		minor="${k8s_version#v1.}"
		minor="${minor%%.*}"
		ldflags="-s -w"
		for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
			ldflags+=" -X ${pkg}.gitVersion=${k8s_version} -X ${pkg}.gitMajor=1 -X ${pkg}.gitMinor=${minor}"
			ldflags+=" -X ${pkg}.gitTreeState=clean -X ${pkg}.buildDate=${released} -X ${pkg}.gitCommit="
		done
		for b in "${k8s_wanted[@]}"; do
			log "compiling $b"
			start=$SECONDS
			go build -ldflags="$ldflags" -o "$work/bin/$b" "k8s.io/kubernetes/cmd/$b" >&2
			log "compiled $b in $((SECONDS - start))s"
		done
	)
fi

# --- CoreDNS --------------------------------------------------------------------
if want coredns; then
	log "building coredns ${COREDNS_VERSION}"
	mkdir -p "$work/coredns"
	(
		cd "$work/coredns"
		go mod init gatehouse.local/e2e-coredns >/dev/null 2>&1
		echo "require github.com/coredns/coredns ${COREDNS_VERSION}" >>go.mod
		printf '//go:build tools\n\npackage tools\n\nimport _ "github.com/coredns/coredns"\n' >tools.go
		go mod tidy >&2
		start=$SECONDS
		go build -ldflags="-s -w -X github.com/coredns/coredns/coremain.GitCommit=${COREDNS_VERSION}" \
			-o "$work/bin/coredns" github.com/coredns/coredns >&2
		log "compiled coredns in $((SECONDS - start))s"
	)
fi

for b in "${missing[@]}"; do
	mv "$work/bin/$b" "$cache/$b"
done
log "cached in $cache"
echo "$cache"
