#!/usr/bin/env bash
# Captures the INFO texts the redisinfo tests parse, from real redis-server
# processes on loopback (the OS package: hack/install-redis.sh). Each file is
# one scenario a Gatehouse cluster meets in production; rerun this script to
# refresh them after a Redis upgrade:
#
#   internal/redisinfo/testdata/capture.sh
#
# The operator asks for exactly these sections (redisinfo.Sections), so that
# is what every file holds, except info-default.txt: a plain INFO, to show the
# parser ignores sections it does not know.
set -euo pipefail

OUT="$(cd "$(dirname "$0")" && pwd)"
WORK="$(mktemp -d)"
# INFO reports the executable's path, which is made from the working directory.
cd /
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
	rm -rf "$WORK"
}
trap cleanup EXIT

SECTIONS="server clients memory persistence stats replication keyspace"

# port prints a free loopback port below 55535, so that cluster nodes' bus
# port (port+10000) is valid too.
port() {
	python3 - <<'PY'
import random, socket
while True:
    p = random.randint(20000, 55000)
    try:
        for q in (p, p + 10000):
            s = socket.socket(); s.bind(("127.0.0.1", q)); s.close()
        print(p); break
    except OSError:
        pass
PY
}

# start NAME [directive value]... starts a server in its own directory and
# sets PORT and PID.
start() {
	local name=$1; shift
	local p; p=$(port)
	mkdir -p "$WORK/$name"
	redis-server --port "$p" --bind 127.0.0.1 --dir "$WORK/$name" --save '' --appendonly no \
		--logfile "$WORK/$name/redis.log" --daemonize no "$@" >/dev/null 2>&1 &
	PID=$!
	disown "$PID"
	PIDS+=("$PID")
	for _ in $(seq 100); do redis-cli -p "$p" PING >/dev/null 2>&1 && break; sleep 0.05; done
	PORT=$p
}

cli() { local p=$1; shift; redis-cli -p "$p" "$@"; }
capture() { local p=$1 file=$2; shift 2; cli "$p" INFO "$@" | tr -d '\r' >"$OUT/$file"; echo "wrote $file"; }

# A fresh standalone server: no keys, no traffic.
start empty; s=$PORT
capture "$s" standalone-empty.txt $SECTIONS
capture "$s" info-default.txt

# A cluster-mode primary with one synced replica: keys with and without a
# TTL, lookups that hit and miss, and 20 keys that expired.
start primary --cluster-enabled yes --cluster-config-file nodes.conf --repl-diskless-sync-delay 0; p=$PORT; primary_pid=$PID
start replica --cluster-enabled yes --cluster-config-file nodes.conf; r=$PORT
cli "$p" CLUSTER ADDSLOTSRANGE 0 16383 >/dev/null
cli "$r" CLUSTER MEET 127.0.0.1 "$p" >/dev/null
# redis-cli exits 0 on an error reply: check the reply itself.
for _ in $(seq 100); do [ "$(cli "$r" CLUSTER REPLICATE "$(cli "$p" CLUSTER MYID)")" = OK ] && break; sleep 0.1; done
for _ in $(seq 100); do cli "$r" INFO replication | grep -q 'master_link_status:up' && break; sleep 0.1; done
for _ in $(seq 100); do cli "$p" CLUSTER INFO | grep -q 'cluster_state:ok' && break; sleep 0.1; done
for i in $(seq 1 300); do echo "SET k$i v$i"; done | cli "$p" >/dev/null
for i in $(seq 1 50); do echo "SET t$i v EX 3600"; done | cli "$p" >/dev/null
for i in $(seq 1 200); do echo "GET k$i"; done | cli "$p" >/dev/null
for i in $(seq 1 40); do echo "GET missing$i"; done | cli "$p" >/dev/null
for i in $(seq 1 20); do echo "SET e$i v PX 1"; done | cli "$p" >/dev/null
sleep 0.2
for i in $(seq 1 20); do echo "GET e$i"; done | cli "$p" >/dev/null
for _ in $(seq 100); do
	[ "$(cli "$p" INFO replication | sed -n 's/^master_repl_offset://p' | tr -d '\r')" = \
	  "$(cli "$r" INFO replication | sed -n 's/^slave_repl_offset://p' | tr -d '\r')" ] && break
	sleep 0.1
done
sleep 1.2 # the replica acks its offset once a second
capture "$p" cluster-primary.txt $SECTIONS
capture "$r" cluster-replica.txt $SECTIONS

# The same replica after its primary died: the link is down.
kill -9 "$primary_pid"
for _ in $(seq 100); do cli "$r" INFO replication | grep -q 'master_link_status:down' && break; sleep 0.1; done
capture "$r" replica-link-down.txt $SECTIONS

# A replica waiting for its first full sync: the primary delays the
# transfer by 30s, so the link is down with no sync in progress yet.
start slowprimary --repl-diskless-sync yes --repl-diskless-sync-delay 30; p2=$PORT
start syncing; r2=$PORT
for i in $(seq 1 100); do echo "SET k$i v$i"; done | cli "$p2" >/dev/null
cli "$r2" REPLICAOF 127.0.0.1 "$p2" >/dev/null
for _ in $(seq 100); do cli "$p2" INFO replication | grep -q 'state=wait_bgsave' && break; sleep 0.1; done
capture "$r2" replica-awaiting-sync.txt $SECTIONS
capture "$p2" primary-waiting-bgsave.txt $SECTIONS

# maxclients exhausted: with maxclients 2, the third and later connections
# are refused ("max number of clients reached") and counted.
start maxclients --maxclients 2; m=$PORT
python3 - "$m" <<'PY'
import socket, sys, time
port = int(sys.argv[1])
held = []
for _ in range(2):
    s = socket.create_connection(("127.0.0.1", port)); s.sendall(b"PING\r\n"); s.recv(64); held.append(s)
for _ in range(5):
    s = socket.create_connection(("127.0.0.1", port)); s.recv(128); s.close()
for s in held: s.close()
time.sleep(0.2)
PY
capture "$m" maxclients-rejected.txt $SECTIONS

# fill PORT writes 1 KB values until a write fails with OOM or 20 000 keys
# are written.
fill() {
	python3 - "$1" <<'PY'
import socket, sys
port = int(sys.argv[1])
s = socket.create_connection(("127.0.0.1", port)); f = s.makefile("rb")
val = b"x" * 1000
for i in range(20000):
    key = b"fill:%d" % i
    s.sendall(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(key), key, len(val), val))
    if f.readline().startswith(b"-OOM"):
        break
PY
}

# A Durable node (noeviction) filled past maxmemory: writes fail with OOM.
start durable --maxmemory 3mb --maxmemory-policy noeviction; d=$PORT
fill "$d"
capture "$d" noeviction-full.txt $SECTIONS

# A Cache node (allkeys-lru) under the same load: it evicts instead.
start cache --maxmemory 3mb --maxmemory-policy allkeys-lru; c=$PORT
fill "$c"
capture "$c" allkeys-lru-evicting.txt $SECTIONS

# Persistence failing: the data directory disappears under a running node,
# so the snapshot and the AOF rewrite both fail.
start failing --appendonly yes; f=$PORT
cli "$f" SET k v >/dev/null
rm -rf "$WORK/failing"
cli "$f" BGSAVE >/dev/null
cli "$f" BGREWRITEAOF >/dev/null || true
for _ in $(seq 100); do
	info=$(cli "$f" INFO persistence)
	grep -q 'rdb_last_bgsave_status:err' <<<"$info" && grep -q 'aof_last_bgrewrite_status:err' <<<"$info" && break
	sleep 0.1
done
capture "$f" persistence-failing.txt $SECTIONS
