#!/usr/bin/env bash
# A real one-node Kubernetes cluster on this machine, for `make e2e`:
#
#   hack/e2e/cluster.sh up         build what is missing, start the cluster, wait for node Ready + DNS
#   hack/e2e/cluster.sh down       stop it and check the host is exactly as before `up`
#   hack/e2e/cluster.sh status     is one running, and how to reach it
#   hack/e2e/cluster.sh kubectl …  kubectl against it (from inside its network namespace)
#   hack/e2e/cluster.sh exec CMD…  run a command inside its network namespace
#   hack/e2e/cluster.sh images     rebuild the images and import them into the running cluster
#
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd,
# the kubelet and kube-proxy run as processes here; CoreDNS runs as a pod.
# Every one of them runs in a network namespace of the script's own that has
# no route off the machine: the node address, the pod and the Service ranges
# exist only in there (docs/e2e.md). Images come from hack/e2e/images and are
# imported into containerd; nothing is pulled.
#
# One cluster per machine: state lives in /var/tmp/gatehouse-e2e, and `up`
# refuses to start while a cluster (or what is left of one) exists.
# Needs root (network namespaces, cgroups, mounts).
set -euo pipefail
export LC_ALL=C

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STATE=/var/tmp/gatehouse-e2e
NETNS=gatehouse-e2e
NODE=gatehouse-e2e
CGROUP=gatehouse-e2e
# Addresses come from 198.18.0.0/15, the range RFC 2544 sets aside for
# benchmark networks: no real network uses it, and nothing in it is
# reachable from this namespace anyway.
NODE_IP=198.18.0.2
POD_CIDR=198.18.64.0/18
POD_GATEWAY=198.18.64.1
SERVICE_CIDR=198.18.128.0/20
API_SERVICE_IP=198.18.128.1
DNS_IP=198.18.128.10
API_PORT=6443
# Local persistent volumes the cluster offers, like kind's default storage:
# RedisCluster's claims bind to them (docs/e2e.md).
PV_COUNT=16
# Components in start order; down stops them in reverse.
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy)
# Sysctls the kubelet sets on the host (setupKernelTunables); down restores them.
KUBELET_SYSCTLS=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes)
# Host paths some component writes whatever it is configured with
# (docs/e2e.md); down removes what was not there before.
HOST_PATHS=(/var/lib/kubelet /var/log/containers /var/log/pods /var/lib/cni /run/containerd /opt/containerd /var/lib/containerd /etc/cni /opt/cni /run/xtables.lock /run/netns /etc/kubernetes)
# Sysctls that change on their own while a machine runs.
VOLATILE_SYSCTLS='^(fs\.(dentry-state|file-nr|inode-nr|inode-state|aio-nr|quota\.[a-z_]+)|kernel\.(ns_last_pid|random\.(uuid|entropy_avail)|pty\.nr)|net\.netfilter\.nf_conntrack_count) '

log() { echo "e2e-cluster: $*" >&2; }
die() {
	echo "e2e-cluster: $*" >&2
	exit 1
}
# busy: another cluster (or what is left of one) is in the way; exit 3 so
# callers know not to tear down what they did not start.
busy() {
	echo "e2e-cluster: $*" >&2
	exit 3
}

in_ns() { nsenter --net="/run/netns/$NETNS" -- "$@"; }

kc() { in_ns "$ASSETS/kubectl" --kubeconfig "$STATE/pki/admin.kubeconfig" "$@"; }

need_root() {
	[[ "$(id -u)" == 0 ]] || die "needs root (network namespaces, cgroups, mounts); run it as root or with sudo"
}

lock() {
	mkdir -p "$STATE"
	exec 9<"$STATE"
	# A few seconds: children of an interrupted run may still hold it.
	flock -w 10 9 || busy "another 'cluster.sh up' or 'down' is running on this machine"
}

# --- host state ---------------------------------------------------------------

# cluster_processes lists processes that belong to a cluster: its binaries,
# containerd and its shims, anything in its network namespace or cgroups.
cluster_processes() {
	local nsino="" p exe why
	if [[ -e "/run/netns/$NETNS" ]]; then nsino="$(stat -L -c %i "/run/netns/$NETNS")"; fi
	for p in /proc/[0-9]*; do
		exe="$(readlink "$p/exe" 2>/dev/null)" || continue
		why=""
		case "$exe" in
		"${ASSETS:-/nonexistent}"/* | /usr/bin/containerd | /usr/bin/containerd-shim* | /usr/sbin/runc) why=binary ;;
		esac
		if [[ -z "$why" && -n "$nsino" && "$(stat -L -c %i "$p/ns/net" 2>/dev/null)" == "$nsino" ]]; then why=netns; fi
		if [[ -z "$why" ]] && grep -qE ":/${CGROUP}(/|$)" "$p/cgroup" 2>/dev/null; then why=cgroup; fi
		if [[ -n "$why" ]]; then echo "${p#/proc/} $(cat "$p/comm" 2>/dev/null) $exe ($why)"; fi
	done
}

# host_paths lists what exists under HOST_PATHS.
host_paths() {
	local p
	for p in "${HOST_PATHS[@]}"; do
		if [[ -e "$p" || -L "$p" ]]; then find "$p" -xdev 2>/dev/null; fi
	done | sort
}

# snapshot records everything of the host the cluster could change.
snapshot() {
	local d="$1" t
	mkdir -p "$d"
	# mount point, file system, source, options (mount ids change)
	awk '{ for (i = 7; $i != "-"; i++); print $5, $(i+1), $(i+2), $6 }' /proc/self/mountinfo | sort >"$d/mounts"
	# Each hierarchy's top level (where the kubelet's cgroupRoot lives) and
	# anything named after the cluster: deeper cgroups belong to whatever
	# else runs on the machine and come and go with it.
	{
		find /sys/fs/cgroup -mindepth 2 -maxdepth 2 -type d
		find /sys/fs/cgroup -mindepth 3 -type d -name "*${CGROUP}*"
	} 2>/dev/null | sort >"$d/cgroups"
	ip -o link show | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }' | sort >"$d/links"
	ip -o addr show | awk '{ print $2, $3, $4 }' | sort >"$d/addresses"
	ip route show table all | sort >"$d/routes"
	ip netns list 2>/dev/null | sort >"$d/netns"
	# Without -t the *-save tools read only tables that exist; with it they
	# would create the table (and a legacy one cannot be removed again).
	for t in iptables ip6tables iptables-legacy ip6tables-legacy; do
		if command -v "$t-save" >/dev/null; then
			"$t-save" 2>/dev/null | grep -v '^#' | sed 's/\[[0-9]*:[0-9]*\]//' >"$d/$t" || true
		fi
	done
	nft list ruleset >"$d/nft" 2>/dev/null || true
	sysctl -a 2>/dev/null | grep -Ev "$VOLATILE_SYSCTLS" | sort >"$d/sysctls"
	host_paths >"$d/paths"
	cluster_processes >"$d/processes"
}

# compare fails, listing every difference, unless two snapshots are equal.
compare() {
	local before="$1" after="$2" f bad=0
	for f in "$before"/*; do
		f="$(basename "$f")"
		if ! diff -u "$before/$f" "$after/$f" >"$after/$f.diff"; then
			echo "e2e-cluster: host changed: $f" >&2
			sed 's/^/    /' "$after/$f.diff" >&2
			bad=1
		fi
	done
	return $bad
}

# --- certificates and kubeconfigs ---------------------------------------------

# cert NAME SUBJECT [SAN…]: a key pair signed by the cluster CA.
cert() {
	local name="$1" subj="$2" pki="$STATE/pki"
	shift 2
	openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$pki/$name.key" 2>/dev/null
	{
		echo "basicConstraints=critical,CA:FALSE"
		echo "keyUsage=critical,digitalSignature,keyEncipherment"
		if (($# > 0)); then
			echo "extendedKeyUsage=serverAuth,clientAuth"
			local IFS=,
			echo "subjectAltName=$*"
		else
			echo "extendedKeyUsage=clientAuth"
		fi
	} >"$pki/$name.ext"
	openssl req -new -key "$pki/$name.key" -subj "$subj" 2>/dev/null |
		openssl x509 -req -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial -days 2 \
			-extfile "$pki/$name.ext" -out "$pki/$name.crt" 2>/dev/null
}

kubeconfig() {
	local name="$1" pki="$STATE/pki"
	cat >"$pki/$name.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: $NODE
  cluster:
    certificate-authority: $pki/ca.crt
    server: https://$NODE_IP:$API_PORT
users:
- name: $name
  user:
    client-certificate: $pki/$name.crt
    client-key: $pki/$name.key
contexts:
- name: $NODE
  context: {cluster: $NODE, user: $name}
current-context: $NODE
EOF
}

pki() {
	local pki="$STATE/pki"
	mkdir -p "$pki"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
		-subj "/CN=gatehouse-e2e-ca" -addext "basicConstraints=critical,CA:TRUE" \
		-addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
		-keyout "$pki/ca.key" -out "$pki/ca.crt" 2>/dev/null
	openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$pki/sa.key" 2>/dev/null
	openssl pkey -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
	cert apiserver "/CN=kube-apiserver" DNS:kubernetes DNS:kubernetes.default DNS:kubernetes.default.svc \
		DNS:kubernetes.default.svc.cluster.local DNS:localhost "IP:$API_SERVICE_IP" "IP:$NODE_IP" IP:127.0.0.1
	cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
	cert kubelet "/O=system:nodes/CN=system:node:$NODE"
	cert kubelet-serving "/O=system:nodes/CN=system:node:$NODE" "DNS:$NODE" "IP:$NODE_IP"
	cert admin "/O=system:masters/CN=kubernetes-admin"
	cert kube-controller-manager "/CN=system:kube-controller-manager"
	cert kube-scheduler "/CN=system:kube-scheduler"
	cert kube-proxy "/CN=system:kube-proxy"
	for n in admin kubelet kube-controller-manager kube-scheduler kube-proxy; do kubeconfig "$n"; done
}

# --- configuration files --------------------------------------------------------

write_configs() {
	local pki="$STATE/pki"
	mkdir -p "$STATE/cni/net.d" "$STATE/containerd" "$STATE/volumes"
	# The bridge, its veths and the host-local leases live in the cluster's
	# namespace and state directory. Pods get a default route to the
	# bridge, and the namespace has none beyond it: traffic to any address
	# outside the cluster gets "network unreachable".
	cat >"$STATE/cni/net.d/10-gatehouse-e2e.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "gatehouse-e2e",
  "plugins": [{
    "type": "bridge",
    "bridge": "cni0",
    "isGateway": true,
    "ipMasq": false,
    "hairpinMode": true,
    "ipam": {
      "type": "host-local",
      "dataDir": "$STATE/cni/networks",
      "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$POD_GATEWAY"}]],
      "routes": [{"dst": "0.0.0.0/0"}]
    }
  }]
}
EOF
	# containerd 1.6 with its state under STATE. restrict_oom_score_adj:
	# this machine drops CAP_SYS_RESOURCE, so runc must not lower
	# oom_score_adj. Pod network namespaces are mounted under the state
	# directory, not /run/netns.
	cat >"$STATE/containerd/config.toml" <<EOF
version = 2
root = "$STATE/containerd/root"
state = "$STATE/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "$STATE/containerd/containerd.sock"
[ttrpc]
  address = "$STATE/containerd/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$STATE/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "gatehouse.local/pause:e2e"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$STATE/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$STATE/cni/net.d"
    max_conf_num = 1
EOF
	# Pods with dnsPolicy Default (CoreDNS) get the node's resolv.conf:
	# give them one without nameservers, so nothing resolves off the machine.
	echo "# gatehouse-e2e: no upstream DNS" >"$STATE/resolv.conf"
	cat >"$STATE/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://$STATE/containerd/containerd.sock
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $pki/kubelet-serving.crt
tlsPrivateKeyFile: $pki/kubelet-serving.key
clusterDomain: cluster.local
clusterDNS: [$DNS_IP]
resolvConf: $STATE/resolv.conf
podLogsDir: $STATE/pod-logs
# cgroup v1 (this machine's hierarchy), with the cgroupfs driver: PID 1 is
# not systemd. Every pod cgroup is created under /$CGROUP.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /$CGROUP
# This machine drops CAP_SYS_RESOURCE: no process may lower its oom_score_adj.
oomScoreAdj: 0
# Images cannot be pulled again: never collect them, and do not evict for a
# fuller disk than a CI machine may have.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, nodefs.inodesFree: 1%, imagefs.available: 1%}
# The default is 1m: ConfigMap volume updates (the kubelet's ..data swap)
# reach pods within seconds instead of a minute.
syncFrequency: 10s
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
serializeImagePulls: false
EOF
	cat >"$STATE/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $pki/kube-proxy.kubeconfig}
hostnameOverride: $NODE
mode: iptables
clusterCIDR: $POD_CIDR
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
oomScoreAdj: 0
# 0 leaves the kernel's conntrack settings alone (some are host-wide).
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
}

# --- processes ----------------------------------------------------------------

start() {
	local name="$1"
	shift
	log "starting $name"
	# 9<&-: the lock is the script's, not the cluster's.
	# Not through in_ns: a function in the background is a subshell, and $!
	# would not be the component's pid.
	nsenter --net="/run/netns/$NETNS" -- setsid "$@" >"$STATE/logs/$name.log" 2>&1 </dev/null 9<&- &
	echo $! >"$STATE/pids/$name"
}

# wait_for DESCRIPTION SECONDS COMMAND…: poll until COMMAND succeeds.
wait_for() {
	local what="$1" timeout="$2" start=$SECONDS
	shift 2
	until "$@" >/dev/null 2>&1; do
		if ((SECONDS - start > timeout)); then
			log "timed out after ${timeout}s waiting for $what"
			return 1
		fi
		check_running
		sleep 0.5
	done
	log "$what after $((SECONDS - start))s"
}

# check_running fails with a component's log when it exited.
check_running() {
	local f name
	for f in "$STATE"/pids/*; do
		[[ -e "$f" ]] || continue
		name="$(basename "$f")"
		if ! kill -0 "$(cat "$f")" 2>/dev/null; then
			log "$name exited; the end of $STATE/logs/$name.log:"
			tail -n 30 "$STATE/logs/$name.log" >&2
			exit 1
		fi
	done
}

node_ready() {
	[[ "$(kc get node "$NODE" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" == True ]]
}

dns_answers() {
	in_ns busybox nslookup kubernetes.default.svc.cluster.local "$DNS_IP" | grep -qE "^Address:[[:space:]]+${API_SERVICE_IP//./\\.}$"
}

cgroup_roots() {
	local h
	for h in /sys/fs/cgroup/*/; do echo "${h%/}/$CGROUP"; done
}

make_cgroups() {
	local d parent
	for d in $(cgroup_roots); do
		mkdir -p "$d"
		# A new cpuset cgroup starts with no CPUs and no memory nodes.
		if [[ -e "$d/cpuset.cpus" ]]; then
			parent="$(dirname "$d")"
			cat "$parent/cpuset.cpus" >"$d/cpuset.cpus"
			cat "$parent/cpuset.mems" >"$d/cpuset.mems"
		fi
	done
}

storage_manifest() {
	cat <<EOF
# Like kind's default storage, but static: local volumes under $STATE/volumes.
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: standard
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: WaitForFirstConsumer
reclaimPolicy: Retain
EOF
	local i
	for ((i = 0; i < PV_COUNT; i++)); do
		mkdir -p "$STATE/volumes/pv$i"
		cat <<EOF
---
apiVersion: v1
kind: PersistentVolume
metadata:
  name: e2e-pv$i
spec:
  capacity: {storage: 8Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: standard
  local: {path: $STATE/volumes/pv$i}
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions:
        - {key: kubernetes.io/hostname, operator: In, values: [$NODE]}
EOF
	done
}

build_images() {
	log "building the images"
	(cd "$ROOT" && go run ./hack/e2e/images --out "$STATE/images.tar" --coredns "$ASSETS/coredns" >"$STATE/logs/images.log")
}

import_images() {
	log "importing the images into containerd"
	ctr --address "$STATE/containerd/containerd.sock" -n k8s.io images import "$STATE/images.tar" >"$STATE/logs/import.log"
}

# --- up -----------------------------------------------------------------------

up() {
	need_root
	"$ROOT/hack/e2e/install-packages.sh"
	ASSETS="$("$ROOT/hack/e2e/assets.sh")"
	lock
	if [[ -e "$STATE/cluster.env" ]]; then
		busy "a Gatehouse e2e cluster is already running on this machine (state in $STATE, $(stat -c 'started %y' "$STATE/cluster.env")); 'make e2e-down' stops it"
	fi
	local procs
	procs="$(cluster_processes)"
	if [[ -n "$procs" || -e "/run/netns/$NETNS" ]]; then
		busy "processes or the network namespace of an e2e cluster are still there; 'make e2e-down' cleans up:
${procs}"
	fi
	if [[ -n "$(ls -A "$STATE")" ]]; then
		busy "$STATE holds what a previous cluster left; 'make e2e-down' cleans up"
	fi
	local begin=$SECONDS
	log "recording the host's state"
	snapshot "$STATE/host-before"
	mkdir -p "$STATE/logs" "$STATE/pids"
	echo "ASSETS=$ASSETS" >"$STATE/assets.env"

	build_images

	pki
	write_configs

	log "creating network namespace $NETNS (no route out of this machine)"
	ip netns add "$NETNS"
	ip -n "$NETNS" link set lo up
	# The node's address sits on one end of a veth pair whose other end is
	# in the same namespace: an interface to hold it (this kernel has no
	# dummy links) that leads nowhere. Service addresses route there too,
	# so the host side can reach ClusterIPs through kube-proxy's rules.
	ip -n "$NETNS" link add gh-node type veth peer name gh-peer
	ip -n "$NETNS" addr add "$NODE_IP/32" dev gh-node
	ip -n "$NETNS" link set gh-node up
	ip -n "$NETNS" link set gh-peer up
	ip -n "$NETNS" route add "$SERVICE_CIDR" dev gh-node src "$NODE_IP"
	# Pod-to-Service traffic between two pods on the bridge must pass
	# iptables for kube-proxy's DNAT to be undone on the way back.
	in_ns sysctl -qw net.bridge.bridge-nf-call-iptables=1 net.bridge.bridge-nf-call-ip6tables=1
	make_cgroups

	local pki="$STATE/pki"
	start etcd "$ASSETS/etcd" --name "$NODE" --data-dir "$STATE/etcd" \
		--listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
		--listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
		--initial-cluster "$NODE=http://127.0.0.1:2380" --unsafe-no-fsync
	start kube-apiserver "$ASSETS/kube-apiserver" \
		--etcd-servers http://127.0.0.1:2379 \
		--advertise-address "$NODE_IP" --bind-address 0.0.0.0 --secure-port "$API_PORT" \
		--service-cluster-ip-range "$SERVICE_CIDR" \
		--tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
		--client-ca-file "$pki/ca.crt" \
		--kubelet-client-certificate "$pki/apiserver-kubelet-client.crt" \
		--kubelet-client-key "$pki/apiserver-kubelet-client.key" \
		--kubelet-certificate-authority "$pki/ca.crt" \
		--kubelet-preferred-address-types InternalIP \
		--service-account-issuer https://kubernetes.default.svc.cluster.local \
		--service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
		--authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction
	wait_for "API server ready" 90 kc get --raw /readyz
	start kube-controller-manager "$ASSETS/kube-controller-manager" \
		--kubeconfig "$pki/kube-controller-manager.kubeconfig" \
		--authentication-kubeconfig "$pki/kube-controller-manager.kubeconfig" \
		--authorization-kubeconfig "$pki/kube-controller-manager.kubeconfig" \
		--bind-address 127.0.0.1 --leader-elect=false \
		--service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
		--use-service-account-credentials \
		--cluster-signing-cert-file "$pki/ca.crt" --cluster-signing-key-file "$pki/ca.key" \
		--service-cluster-ip-range "$SERVICE_CIDR"
	start kube-scheduler "$ASSETS/kube-scheduler" \
		--kubeconfig "$pki/kube-scheduler.kubeconfig" \
		--authentication-kubeconfig "$pki/kube-scheduler.kubeconfig" \
		--authorization-kubeconfig "$pki/kube-scheduler.kubeconfig" \
		--bind-address 127.0.0.1 --leader-elect=false
	start containerd containerd --config "$STATE/containerd/config.toml"
	wait_for "containerd ready" 30 ctr --address "$STATE/containerd/containerd.sock" version
	import_images
	start kubelet "$ASSETS/kubelet" --config "$STATE/kubelet.yaml" \
		--kubeconfig "$pki/kubelet.kubeconfig" --root-dir "$STATE/kubelet" \
		--hostname-override "$NODE" --node-ip "$NODE_IP"
	wait_for "node Ready" 120 node_ready
	start kube-proxy "$ASSETS/kube-proxy" --config "$STATE/kube-proxy.yaml"

	# Pods need the ServiceAccount and root CA the controller manager creates.
	wait_for "default ServiceAccount and kube-root-ca.crt" 60 \
		kc -n default get serviceaccount/default configmap/kube-root-ca.crt
	sed "s/@DNS_IP@/$DNS_IP/" "$ROOT/hack/e2e/manifests/coredns.yaml" | kc apply -f - >/dev/null
	storage_manifest | kc apply -f - >/dev/null
	wait_for "CoreDNS available" 120 kc -n kube-system wait deployment/coredns --for=condition=Available --timeout=2s
	wait_for "cluster DNS answers through kube-proxy" 60 dns_answers

	cat >"$STATE/cluster.env" <<EOF
# Written by hack/e2e/cluster.sh up.
export KUBECONFIG=$STATE/pki/admin.kubeconfig
E2E_NETNS=$NETNS
E2E_ASSETS=$ASSETS
E2E_NODE=$NODE
EOF
	log "cluster up in $((SECONDS - begin))s"
	status
}

# --- down ---------------------------------------------------------------------

stop_pid() {
	local pid="$1" i
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
}

down() {
	need_root
	if [[ ! -d "$STATE" ]]; then
		log "no e2e cluster on this machine"
		return 0
	fi
	lock
	ASSETS=""
	if [[ -e "$STATE/assets.env" ]]; then ASSETS="$(sed -n 's/^ASSETS=//p' "$STATE/assets.env")"; fi
	local i name pid
	for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do
		name="${COMPONENTS[i]}"
		[[ -e "$STATE/pids/$name" ]] || continue
		log "stopping $name"
		stop_pid "$(cat "$STATE/pids/$name")"
	done
	# Containers, their shims and anything left in the namespace.
	for ((i = 0; i < 50; i++)); do
		local procs
		procs="$(cluster_processes)"
		[[ -n "$procs" ]] || break
		for pid in $(awk '{ print $1 }' <<<"$procs"); do kill -KILL "$pid" 2>/dev/null || true; done
		sleep 0.2
	done
	log "unmounting"
	local m
	for ((i = 0; i < 5; i++)); do
		m="$(awk -v s="$STATE" '$5 == s || index($5, s "/") == 1 { print $5 }' /proc/self/mountinfo | awk '{ print length, $0 }' | sort -rn | cut -d' ' -f2-)"
		[[ -n "$m" ]] || break
		while read -r mp; do umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || true; done <<<"$m"
	done
	if [[ -e "/run/netns/$NETNS" ]]; then
		log "deleting network namespace $NETNS"
		ip netns delete "$NETNS"
	fi
	log "removing cgroups"
	local d
	for d in $(cgroup_roots); do
		[[ -d "$d" ]] || continue
		find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
	done
	local before="$STATE/host-before"
	if [[ -d "$before" ]]; then
		log "restoring the kubelet's sysctls"
		local key value
		for key in "${KUBELET_SYSCTLS[@]}"; do
			value="$(sed -n "s/^$key = //p" "$before/sysctls")"
			if [[ -n "$value" && "$(sysctl -n "$key")" != "$value" ]]; then sysctl -qw "$key=$value"; fi
		done
		log "removing what the components left outside $STATE"
		local p
		local created
		created="$(comm -13 "$before/paths" <(host_paths))"
		if [[ -n "$created" ]]; then
			while read -r p; do
				grep -qxF "$(dirname "$p")" <<<"$created" || log "  $p"
			done <<<"$created"
			sort -r <<<"$created" | while read -r p; do
				if [[ "$p" == /run/netns ]] && mountpoint -q /run/netns; then umount /run/netns; fi
				rm -rf "$p"
			done
		fi
		if mountpoint -q /run/netns && ! grep -q ' /run/netns ' "$before/mounts"; then umount /run/netns; fi
	fi
	# Keep the record of the host until the comparison is done.
	local check
	check="$(mktemp -d)"
	if [[ -d "$before" ]]; then cp -r "$before" "$check/before"; fi
	rm -rf "$STATE"
	exec 9<&-
	if [[ ! -d "$check/before" ]]; then
		rm -rf "$check"
		log "stopped (no record of the host from before 'up' to compare with)"
		return 0
	fi
	snapshot "$check/after"
	if ! compare "$check/before" "$check/after"; then
		log "the host is not as it was before 'up' (kept in $check)"
		return 1
	fi
	rm -rf "$check"
	log "stopped; the host is as it was before 'up' (processes, mounts, cgroups, interfaces, routes, iptables/nft, sysctls, host paths)"
}

# --- status -------------------------------------------------------------------

status() {
	if [[ ! -e "$STATE/cluster.env" ]]; then
		echo "no e2e cluster running (make e2e-up starts one)"
		return 1
	fi
	cat <<EOF
Gatehouse e2e cluster: node $NODE at $NODE_IP, Services $SERVICE_CIDR, pods $POD_CIDR,
in network namespace $NETNS (state and logs in $STATE).
  hack/e2e/cluster.sh kubectl get pods -A          # kubectl, from inside the namespace
  hack/e2e/cluster.sh exec CMD…                    # any command in there
  make e2e-down                                    # stop it, and check the host is as before
EOF
}

case "${1:-}" in
up) up ;;
down) down ;;
status) status ;;
kubectl)
	shift
	[[ -e "$STATE/cluster.env" ]] || die "no e2e cluster running (make e2e-up starts one)"
	ASSETS="$(sed -n 's/^ASSETS=//p' "$STATE/assets.env")"
	kc "$@"
	;;
images)
	need_root
	[[ -e "$STATE/cluster.env" ]] || die "no e2e cluster running (make e2e-up starts one)"
	ASSETS="$(sed -n 's/^ASSETS=//p' "$STATE/assets.env")"
	build_images
	import_images
	;;
exec)
	shift
	[[ -e "$STATE/cluster.env" ]] || die "no e2e cluster running (make e2e-up starts one)"
	# shellcheck disable=SC1091
	source "$STATE/cluster.env"
	export KUBECONFIG
	in_ns "$@"
	;;
*)
	echo "usage: $0 up|down|status|images|kubectl ARGS…|exec CMD…" >&2
	exit 2
	;;
esac
