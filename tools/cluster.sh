#!/usr/bin/env bash
# A three-node memhive cluster on loopback, for development (`make cluster`):
# Debian's etcd (/usr/bin/etcd, data in $DATA/etcd, auto-compaction on) and
# three `memhive serve --etcd` nodes n1..n3 (memcache on 127.0.0.1:11211-11213,
# HTTP on 127.0.0.1:11280-11282, data in $DATA/n1..n3, one admin token). It
# waits until all three are in the server list, creates the cache $CACHE (or
# finds it), prints its MEMCACHIER_SERVERS/USERNAME/PASSWORD lines, and then
# waits. Ctrl-C (or SIGTERM) stops every process it started, by pid. A node
# that exits while it waits is reported and the others serve on; etcd or the
# last node exiting stops it all. It fails loudly, naming what is missing.
#
# Environment: MEMHIVE_BIN (bin/memhive), ETCD (/usr/bin/etcd), DATA
# (./data/cluster), CACHE (app), CACHE_MB (96: a third on each node),
# NODE_MB (256, each node's --memory), ROUTE (server: any node serves any
# key; client: clients hash over the list), MEMCACHE_PORT (11211), HTTP_PORT
# (11280), ETCD_PORT (12379, and the next for etcd's peer port: not 2379, where
# Debian's etcd-server package may run a system etcd).
set -euo pipefail

cd "$(dirname "$0")/.."
BIN=${MEMHIVE_BIN:-bin/memhive}
ETCD=${ETCD:-/usr/bin/etcd}
DATA=${DATA:-./data/cluster}
CACHE=${CACHE:-app}
CACHE_MB=${CACHE_MB:-96}
NODE_MB=${NODE_MB:-256}
ROUTE=${ROUTE:-server}
MEMCACHE_PORT=${MEMCACHE_PORT:-11211}
HTTP_PORT=${HTTP_PORT:-11280}
ETCD_PORT=${ETCD_PORT:-12379}
ETCD_URL=http://127.0.0.1:$ETCD_PORT
NODES=(n1 n2 n3)

fail() {
	echo "cluster: $*" >&2
	exit 1
}

[ -x "$ETCD" ] || fail "etcd not found at $ETCD: run tools/install-deps.sh (as root) to install Debian's etcd-server, or set ETCD"
[ -x "$BIN" ] || fail "memhive binary not found at $BIN: run make build, or set MEMHIVE_BIN"

mkdir -p "$DATA"
chmod 700 "$DATA"

# Each process runs in a session of its own (setsid execs it in place, so
# $! is its pid): a Ctrl-C reaches this script only, which stops them in
# order, rather than every process at once, etcd before the nodes leave.
command -v setsid >/dev/null 2>&1 || fail "setsid not found (Debian's util-linux)"

# pids lists every process started, in start order; stop() ends them, the
# nodes first (each leaves the member list while etcd still answers), etcd
# last, by pid, waiting up to 10 s before SIGKILL.
pids=()
names=()
stopping=0
stop() {
	[ "$stopping" = 1 ] && return
	stopping=1
	trap - INT TERM EXIT
	local i pid
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		pid=${pids[i]}
		kill -0 "$pid" 2>/dev/null || continue
		echo "cluster: stopping ${names[i]} (pid $pid)" >&2
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 100); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			echo "cluster: ${names[i]} (pid $pid) still running after 10 s: SIGKILL" >&2
			kill -KILL "$pid" 2>/dev/null || true
		fi
		wait "$pid" 2>/dev/null || true
	done
}
trap 'stop; exit 130' INT
trap 'stop; exit 143' TERM
trap 'stop' EXIT

# started NAME PID records a process to stop.
started() {
	names+=("$1")
	pids+=("$2")
}

# alive NAME PID LOG fails, showing the end of LOG, if the process is gone.
alive() {
	kill -0 "$2" 2>/dev/null && return 0
	echo "cluster: $1 (pid $2) exited; the end of $3:" >&2
	tail -n 20 "$3" >&2 || true
	exit 1
}

# port_open PORT reports whether something accepts connections on PORT.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# etcd_healthy reports whether etcd answers its /health with true: it
# listens before it has elected itself leader, and a node that reached it
# then would find it unable to answer.
etcd_healthy() {
	(
		exec 3<>"/dev/tcp/127.0.0.1/$ETCD_PORT" || exit 1
		printf 'GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
		grep -q '"health":"true"' <&3
	) 2>/dev/null
}

for p in "$ETCD_PORT" $((ETCD_PORT + 1)); do
	port_open "$p" && fail "port $p is in use (etcd's): stop what listens there, or set ETCD_PORT"
done
for i in 0 1 2; do
	for p in $((MEMCACHE_PORT + i)) $((HTTP_PORT + i)); do
		port_open "$p" && fail "port $p is in use: stop what listens there (a make run?), or set MEMCACHE_PORT and HTTP_PORT"
	done
done

# The admin token every node shares, kept so that the CLI and later runs
# use the same one.
if [ -n "${MEMHIVE_ADMIN_TOKEN:-}" ]; then
	TOKEN=$MEMHIVE_ADMIN_TOKEN
elif [ -s "$DATA/admin.token" ]; then
	TOKEN=$(cat "$DATA/admin.token")
else
	TOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
	(umask 077 && echo "$TOKEN" >"$DATA/admin.token")
fi

echo "cluster: etcd on $ETCD_URL (data in $DATA/etcd, log $DATA/etcd.log)" >&2
setsid "$ETCD" --name memhive-dev --data-dir "$DATA/etcd" --logger zap \
	--listen-client-urls "$ETCD_URL" --advertise-client-urls "$ETCD_URL" \
	--listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
	--initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
	--initial-cluster "memhive-dev=http://127.0.0.1:$((ETCD_PORT + 1))" \
	--auto-compaction-mode revision --auto-compaction-retention 1000 \
	>"$DATA/etcd.log" 2>&1 &
etcd_pid=$!
started etcd "$etcd_pid"
for _ in $(seq 150); do
	etcd_healthy && break
	alive etcd "$etcd_pid" "$DATA/etcd.log"
	sleep 0.1
done
etcd_healthy || fail "etcd is not healthy on $ETCD_URL/health after 15 s; see $DATA/etcd.log"

servers=""
for i in 0 1 2; do
	node=${NODES[i]}
	listen=127.0.0.1:$((MEMCACHE_PORT + i))
	servers=${servers:+$servers,}$listen
	mkdir -p "$DATA/$node"
	rm -f "$DATA/$node/serve.json" # a kill -9 may have left it: wait for the new one
	echo "cluster: node $node: memcache $listen, http 127.0.0.1:$((HTTP_PORT + i)) (log $DATA/$node.log)" >&2
	setsid "$BIN" serve --etcd "$ETCD_URL" --node "$node" --listen "$listen" \
		--http "127.0.0.1:$((HTTP_PORT + i))" --data "$DATA/$node" --memory "$NODE_MB" \
		--auth sasl --admin-token "$TOKEN" --route "$ROUTE" >"$DATA/$node.log" 2>&1 &
	started "$node" $!
done

# Every node is up when its serve.json (written once it listens and has
# joined) lists all three.
for _ in $(seq 300); do
	up=0
	for i in 0 1 2; do
		alive "${NODES[i]}" "${pids[i + 1]}" "$DATA/${NODES[i]}.log"
		if grep -q "\"servers\":\"$servers\"" "$DATA/${NODES[i]}/serve.json" 2>/dev/null; then
			up=$((up + 1))
		fi
	done
	[ "$up" = 3 ] && break
	sleep 0.1
done
[ "$up" = 3 ] || fail "the nodes did not all list $servers within 30 s; see $DATA/n*.log"

# The cache, through n1's admin API (the CLI finds it in $DATA/n1). Its
# password is known only when made, so it is kept in $DATA/$CACHE.env.
cli() { MEMHIVE_ADMIN_TOKEN=$TOKEN "$BIN" "$@" --data "$DATA/n1"; }
envfile=$DATA/$CACHE.env
if cli cache show "$CACHE" >/dev/null 2>&1; then
	user=$(sed -n 's/^MEMCACHIER_USERNAME=//p' "$envfile" 2>/dev/null || true)
	if [ -z "$user" ] || ! cli cred list "$CACHE" | grep -qw -- "$user"; then
		echo "cluster: cache $CACHE exists; making a new credential for it" >&2
		(umask 077 && cli env "$CACHE" --new-credential 2>/dev/null >"$envfile")
	fi
else
	echo "cluster: creating cache $CACHE ($CACHE_MB MiB, a third on each node)" >&2
	(umask 077 && cli cache create "$CACHE" --memory "$CACHE_MB" | grep '^MEMCACHIER_' >"$envfile")
fi
grep -q "^MEMCACHIER_PASSWORD=." "$envfile" || fail "no credential for cache $CACHE in $envfile"
# The server list as the nodes give it now, with the kept credential.
sed "s/^MEMCACHIER_SERVERS=.*/MEMCACHIER_SERVERS=$servers/" "$envfile"

echo "cluster: running: dashboards http://127.0.0.1:$HTTP_PORT/ ... :$((HTTP_PORT + 2))/, admin token in $DATA/admin.token; Ctrl-C stops it" >&2
# A node that exits is reported, and the others go on serving without it
# (kill one to watch it leave the server list); the script ends when etcd
# or the last node exits.
reported=()
while :; do
	alive etcd "$etcd_pid" "$DATA/etcd.log"
	left=0
	for i in 1 2 3; do
		if kill -0 "${pids[i]}" 2>/dev/null; then
			left=$((left + 1))
		elif [ -z "${reported[i]:-}" ]; then
			reported[i]=1
			echo "cluster: ${names[i]} (pid ${pids[i]}) exited; the end of $DATA/${names[i]}.log:" >&2
			tail -n 5 "$DATA/${names[i]}.log" >&2 || true
		fi
	done
	[ "$left" = 0 ] && fail "every node has exited"
	sleep 1
done
