#!/usr/bin/env bash
# The HTTP API against the native protocol, in one run on one master:
# wrk on GET /healthz and GET /v1/nodes at 50 connections, then noded-bench
# ping at 50 connections (depth 1), each for DURATION seconds. The master's
# CPU time (utime+stime from /proc/PID/stat) around each run gives server CPU
# microseconds per request. Prints a markdown table.
#
# Knobs (environment): DURATION (10), CONNS (50), BUILD (build),
# SERVER_CPU (1), CLIENT_CPU (0): the master runs under taskset on
# SERVER_CPU with one shard, the load generator on CLIENT_CPU.
#
# Every wait is bounded; only the processes started here are stopped, by pid.
set -euo pipefail

cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
CONNS=${CONNS:-50}
BUILD=${BUILD:-build}
SERVER_CPU=${SERVER_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
TICK=$(getconf CLK_TCK)
TMP=$(mktemp -d)
PIDS=()

cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do
		for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$p" 2>/dev/null || true
	done
	rm -rf "$TMP"
}
trap cleanup EXIT

command -v wrk >/dev/null || { echo "bench-http: wrk missing (scripts/deps.sh)" >&2; exit 1; }
make -s all >/dev/null

cpu_ticks() {
	sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}

taskset -c "$SERVER_CPU" "$BUILD/noded" master --listen 127.0.0.1:0 \
	--http 127.0.0.1:0 --shards 1 >"$TMP/out" 2>"$TMP/err" &
MASTER=$!
PIDS+=("$MASTER")
for _ in $(seq 50); do grep -q '^http on' "$TMP/out" && break; sleep 0.1; done
ADDR=$(sed -n 's/^listening on //p' "$TMP/out")
HTTP=$(sed -n 's/^http on //p' "$TMP/out")
[ -n "$ADDR" ] && [ -n "$HTTP" ] || { cat "$TMP/err" >&2; exit 1; }
"$BUILD/noded" worker --master "$ADDR" --name bench-w1 --slots 1 \
	>/dev/null 2>&1 &
PIDS+=("$!")
sleep 1.5

# wrk prints "Requests/sec: N"; its latency line "Latency avg stdev max".
run_wrk() { # path
	local t0 t1 out rps reqs
	t0=$(cpu_ticks "$MASTER")
	out=$(taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" \
		--latency "http://$HTTP$1")
	t1=$(cpu_ticks "$MASTER")
	rps=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
	reqs=$(awk '/requests in/ { print $1 }' <<<"$out")
	p50=$(awk '$1 == "50%" { print $2 }' <<<"$out")
	p99=$(awk '$1 == "99%" { print $2 }' <<<"$out")
	errs=$(awk '/Non-2xx|Socket errors/ { print }' <<<"$out" | tr '\n' ' ')
	cpu=$(awk -v a="$t0" -v b="$t1" -v n="$reqs" -v hz="$TICK" \
		'BEGIN { printf "%.2f", (b - a) / hz * 1e6 / n }')
	printf '| GET %s | %s | %s | %s | %s | %s |\n' "$1" "$rps" "$p50" "$p99" \
		"$cpu" "${errs:-none}"
}

run_ping() {
	local t0 t1 out rps reqs p50 p99 cpu
	t0=$(cpu_ticks "$MASTER")
	out=$(taskset -c "$CLIENT_CPU" "$BUILD/noded-bench" ping --addr "$ADDR" \
		--conns "$CONNS" --depth 1 --duration "$DURATION" --json)
	t1=$(cpu_ticks "$MASTER")
	rps=$(sed 's/.*"rps":\([0-9.]*\).*/\1/' <<<"$out")
	reqs=$(sed 's/.*"requests":\([0-9]*\).*/\1/' <<<"$out")
	p50=$(sed 's/.*"p50_us":\([0-9.]*\).*/\1/' <<<"$out")
	p99=$(sed 's/.*"p99_us":\([0-9.]*\).*/\1/' <<<"$out")
	cpu=$(awk -v a="$t0" -v b="$t1" -v n="$reqs" -v hz="$TICK" \
		'BEGIN { printf "%.2f", (b - a) / hz * 1e6 / n }')
	printf '| native Ping | %s | %sus | %sus | %s | none |\n' "$rps" "$p50" \
		"$p99" "$cpu"
}

echo "| workload ($CONNS connections, ${DURATION}s, 1 shard) | requests/s | p50 | p99 | master CPU per request (us) | errors |"
echo "|---|---:|---:|---:|---:|---|"
run_wrk /healthz
run_wrk /v1/nodes
run_ping
