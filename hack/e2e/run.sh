#!/usr/bin/env bash
# make e2e: start the e2e cluster, run the Ginkgo scenarios of test/e2e
# against it from inside its network namespace, and stop it again, checking
# that the host is as it was (hack/e2e/cluster.sh down). The suite's summary
# table (scenario, result, time) ends its output.
#
#   hack/e2e/run.sh            up, suite, down
#   hack/e2e/run.sh --no-up    the suite only, against a cluster `make e2e-up` started
#
# E2E_KEEP=1 leaves the cluster running after the suite, to look around
# (hack/e2e/cluster.sh status). Ginkgo flags go in E2E_GINKGO_FLAGS, e.g.
# E2E_GINKGO_FLAGS='--ginkgo.focus=cache'.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STATE=/var/tmp/gatehouse-e2e
cluster="$ROOT/hack/e2e/cluster.sh"
own_cluster=1
if [[ "${1:-}" == --no-up ]]; then own_cluster=0; fi

begin=$SECONDS
if ((own_cluster)); then
	up_rc=0
	"$cluster" up || up_rc=$?
	if ((up_rc != 0)); then
		# 3: another cluster is in the way, which is not ours to stop.
		if ((up_rc != 3)) && [[ -z "${E2E_KEEP:-}" ]]; then "$cluster" down || true; fi
		exit 1
	fi
fi
[[ -e "$STATE/cluster.env" ]] || { echo "e2e: no cluster running (make e2e-up)" >&2; exit 1; }
up_done=$SECONDS

# Compiled here, run in the cluster's namespace: the suite reaches the API
# server, Service addresses and pod IPs only from in there.
rc=0
(cd "$ROOT" && go test -c -o "$STATE/e2e.test" ./test/e2e) || rc=$?
if ((rc == 0)); then
	# shellcheck disable=SC1091
	source "$STATE/cluster.env"
	color=()
	if [[ -n "${CI:-}" || ! -t 1 ]]; then color=(-ginkgo.no-color); fi
	# shellcheck disable=SC2086
	(cd "$ROOT/test/e2e" && nsenter --net="/run/netns/$E2E_NETNS" -- env \
		KUBECONFIG="$KUBECONFIG" E2E_KUBECTL="$E2E_ASSETS/kubectl" E2E_KUBELET_ROOT="$STATE/kubelet" \
		E2E_CONTAINERD_STATE="$STATE/containerd/state" \
		"$STATE/e2e.test" -test.v -test.timeout=40m -ginkgo.v "${color[@]}" ${E2E_GINKGO_FLAGS:-}) || rc=$?
fi
suite_done=$SECONDS

if ((own_cluster)) && [[ -z "${E2E_KEEP:-}" ]]; then
	"$cluster" down || rc=1
elif ((own_cluster)); then
	echo "e2e: E2E_KEEP is set: the cluster keeps running ('make e2e-down' stops it)"
fi
echo "e2e: cluster up $((up_done - begin))s, suite $((suite_done - up_done))s, down $((SECONDS - suite_done))s, total $((SECONDS - begin))s"
exit "$rc"
