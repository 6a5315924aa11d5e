#!/usr/bin/env bash
# Prints a directory holding kube-apiserver, etcd and kubectl for envtest.
#
# The usual setup-envtest downloads prebuilt binaries from a release bucket,
# which this project's machines cannot reach. Instead we build them from the
# Kubernetes and etcd Go modules (served by the Go module proxy), pinned to the
# Kubernetes version that matches k8s.io/api in go.mod, and cache the result
# outside the repository so a second run costs nothing.
#
# Order of precedence:
#   1. $KUBEBUILDER_ASSETS, when it already holds the binaries;
#   2. the cache, ${XDG_CACHE_HOME:-$HOME/.cache}/gatehouse/envtest/<version>;
#   3. a fresh build into that cache (about 8 minutes on 2 cores).
#
# Progress goes to stderr; stdout carries only the directory.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ETCD_VERSION="${ETCD_VERSION:-v3.7.0}"

has_assets() {
	[[ -x "$1/kube-apiserver" && -x "$1/etcd" && -x "$1/kubectl" ]]
}

if [[ -n "${KUBEBUILDER_ASSETS:-}" ]] && has_assets "${KUBEBUILDER_ASSETS}"; then
	echo "${KUBEBUILDER_ASSETS}"
	exit 0
fi

# k8s.io/api v0.X.Y ships with Kubernetes v1.X.Y.
api_version="$(cd "$ROOT" && go list -m -f '{{.Version}}' k8s.io/api)"
k8s_version="v1${api_version#v0}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/gatehouse/envtest/${k8s_version#v}"

if has_assets "$cache"; then
	echo "$cache"
	exit 0
fi

log() { echo "envtest-assets: $*" >&2; }
mkdir -p "$cache"
work="$(mktemp -d "${cache}/.build.XXXXXX")"
trap 'rm -rf "$work"' EXIT

export GOFLAGS=-mod=mod
export CGO_ENABLED=0

# --- kube-apiserver and kubectl from k8s.io/kubernetes -----------------------
# k8s.io/kubernetes replaces its k8s.io/* dependencies with ./staging paths,
# which only exist in its own repository. Turn every such replace into the
# published module at the matching v0 version.
log "building kube-apiserver and kubectl ${k8s_version} (takes several minutes)"
mkdir -p "$work/k8s"
(
	cd "$work/k8s"
	go mod init gatehouse.local/envtest-k8s >/dev/null 2>&1
	gomod="$(go mod download -json "k8s.io/kubernetes@${k8s_version}" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')"
	{
		echo "require k8s.io/kubernetes ${k8s_version}"
		sed -n 's#^[[:space:]]*\(k8s.io/[^[:space:]]*\) => ./staging/src/.*#replace \1 => \1 '"${api_version}"'#p' "$gomod"
	} >>go.mod
	go mod tidy >/dev/null 2>&1 || true
	cat >tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
	go mod tidy >&2
	log "compiling kube-apiserver"
	go build -ldflags="-s -w" -o "$work/bin/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver >&2
	log "compiling kubectl"
	go build -ldflags="-s -w" -o "$work/bin/kubectl" k8s.io/kubernetes/cmd/kubectl >&2
)

# --- etcd ---------------------------------------------------------------------
# etcd's server module points its sibling modules at ../ paths; pin them to
# the same release instead.
log "building etcd ${ETCD_VERSION}"
mkdir -p "$work/etcd"
(
	cd "$work/etcd"
	go mod init gatehouse.local/envtest-etcd >/dev/null 2>&1
	{
		echo "require go.etcd.io/etcd/server/v3 ${ETCD_VERSION}"
		for m in api client/pkg client pkg; do
			echo "replace go.etcd.io/etcd/${m}/v3 => go.etcd.io/etcd/${m}/v3 ${ETCD_VERSION}"
		done
	} >>go.mod
	cat >tools.go <<'GO'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
GO
	go mod tidy >&2
	go build -ldflags="-s -w" -o "$work/bin/etcd" go.etcd.io/etcd/server/v3 >&2
)

mv "$work/bin/kube-apiserver" "$work/bin/etcd" "$work/bin/kubectl" "$cache/"
log "cached in $cache"
echo "$cache"
