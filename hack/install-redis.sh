#!/usr/bin/env bash
# Ensures redis-server and redis-cli are installed, from the OS packages.
# Tests and the demo start their own redis-server processes on loopback; this
# only provides the binaries. It also provides curl, which the docs test
# (test/docs) runs exactly as the docs' examples show it.
set -euo pipefail

if command -v redis-server >/dev/null && command -v redis-cli >/dev/null && command -v curl >/dev/null; then
	exit 0
fi
if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null; then
	echo "redis-server or curl is missing: install them with 'sudo apt-get install -y redis-server redis-tools curl' (or your OS's packages), then retry" >&2
	exit 1
fi
echo "install-redis: installing redis-server and redis-tools from the OS packages" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq --no-install-recommends redis-server redis-tools curl >&2
# The package may start a system redis on :6379; tests never use it, but it
# should not linger on CI machines.
if command -v systemctl >/dev/null; then systemctl disable --now redis-server >/dev/null 2>&1 || true; fi
