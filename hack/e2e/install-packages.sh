#!/usr/bin/env bash
# Ensures the Debian packages the e2e cluster runs on are installed: the
# container runtime (containerd, runc), the CNI plugins, iptables (kube-proxy
# and the CNI plugins program it, inside the cluster's network namespace),
# nftables (to check the host is left as it was), iproute2, openssl (the cluster's certificates), busybox-static (a shell and
# grep inside the Redis image) and redis-server/redis-tools (the Redis image is
# assembled from them). As root it installs what is missing, like
# hack/install-redis.sh; otherwise it names the one command to run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
"$ROOT/hack/install-redis.sh"

# package → a file it installs
declare -A probe=(
	[containerd]=/usr/bin/containerd
	[runc]=/usr/sbin/runc
	[containernetworking-plugins]=/usr/lib/cni/bridge
	[iptables]=/usr/sbin/iptables
	[iproute2]=/usr/sbin/ip
	[openssl]=/usr/bin/openssl
	[busybox-static]=/bin/busybox
	[util-linux]=/usr/bin/nsenter
	[nftables]=/usr/sbin/nft
)
missing=()
for pkg in "${!probe[@]}"; do
	[[ -e "${probe[$pkg]}" ]] || missing+=("$pkg")
done
if ((${#missing[@]} == 0)); then
	exit 0
fi
if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null; then
	echo "e2e needs: ${missing[*]}: install them with 'sudo apt-get install -y --no-install-recommends ${missing[*]}' (or your OS's packages), then retry" >&2
	exit 1
fi
echo "e2e-packages: installing ${missing[*]} from the OS packages" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
# The containerd package may start a system containerd; the e2e cluster runs
# its own, with its own state directories, and the host's must not linger.
if command -v systemctl >/dev/null; then systemctl disable --now containerd >/dev/null 2>&1 || true; fi
