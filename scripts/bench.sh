#!/usr/bin/env bash
# Reproducible comparison run: noded against redis-server on loopback.
#
# For each (conns, depth) in RUNS it runs the same Ping workload against both
# servers (noded-bench ping / redis-benchmark -t ping_mbulk), reads each
# server's CPU time (utime+stime from /proc/PID/stat) around the run to get
# server CPU microseconds per request, then measures the resident memory one
# idle connection costs each server (10,000 connections held open by
# `noded-bench idle`). Prints one markdown table and writes bench-results.json.
#
# Knobs (environment): DURATION seconds per run (10), SHARDS noded shards (1),
# RUNS ("1:1:split 50:1:split 50:16:split 1:1:shared"), IDLE_CONNS (10000),
# OUT (bench-results.json), BUILD (build), SERVER_CPU (1), CLIENT_CPU (0).
#
# Placement: both servers run under `taskset -c SERVER_CPU` (noded pins its
# shards inside that set). A "split" run puts the load generator on
# CLIENT_CPU, so each server has a core of its own; a "shared" run puts it on
# the server's CPU. Both servers always get the same placement. On a VM, a
# wake-up across CPUs can cost 100-300 us (an IPI to an idle vCPU), which is
# what dominates split 1x1 latency for either server; the shared 1x1 run shows
# the request path without it.
#
# Notes for reading the numbers: both clients are single-threaded and run on
# the same machine as the server. redis-benchmark -P D sends D commands and
# waits for all D replies before sending more; noded-bench --depth D keeps D
# requests in flight all the time (a new one per reply). redis-benchmark
# prints no p99.9: we take the first line of its percentile distribution at or
# above 99.9% (so it may be the value at 99.902%, slightly pessimistic).
#
# Every wait is bounded; only the processes started here are stopped, by pid.
set -euo pipefail

cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
SHARDS=${SHARDS:-1}
RUNS=${RUNS:-"1:1:split 50:1:split 50:16:split 1:1:shared"}
SERVER_CPU=${SERVER_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
# PIN_SERVER is a command prefix (taskset execs in place, so $! stays the
# server's pid); on_cpu runs a foreground command on a CPU.
if [ "$(nproc)" -ge 2 ]; then
	PIN_SERVER=(taskset -c "$SERVER_CPU")
	on_cpu() { local cpu=$1; shift; taskset -c "$cpu" "$@"; }
else
	PIN_SERVER=()
	on_cpu() { shift; "$@"; }
fi
IDLE_CONNS=${IDLE_CONNS:-10000}
OUT=${OUT:-bench-results.json}
BUILD=${BUILD:-build}
BENCH="$BUILD/noded-bench"
NODED="$BUILD/noded"

die() { echo "bench.sh: $*" >&2; exit 1; }

for tool in redis-server redis-benchmark redis-cli getconf timeout awk taskset; do
	command -v "$tool" >/dev/null 2>&1 ||
		die "$tool not found (run: make deps)"
done

make all >/dev/null || die "make all failed"

# Enough descriptors for IDLE_CONNS connections in the bench process and in
# each server (children inherit this limit).
want_fds=$((IDLE_CONNS + 256))
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt "$want_fds" ]; then
	IDLE_CONNS=$((hard - 256))
	echo "bench.sh: hard fd limit $hard: idle test with $IDLE_CONNS connections" >&2
	want_fds=$hard
fi
ulimit -n "$want_fds"

CLK_TCK=$(getconf CLK_TCK)
TMP=$(mktemp -d /tmp/noded-bench.XXXXXX)
NODED_PID=""
REDIS_PID=""
IDLE_PID=""

# Stops one of our processes: TERM, up to 5 s, then KILL.
stop_pid() {
	local pid=$1 i
	[ -n "$pid" ] || return 0
	kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
	kill -TERM "$pid" 2>/dev/null || true
	for i in $(seq 50); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

cleanup() {
	stop_pid "$IDLE_PID"
	stop_pid "$NODED_PID"
	stop_pid "$REDIS_PID"
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# utime + stime of pid, in clock ticks (fields 14 and 15 of /proc/PID/stat,
# counted after the parenthesised command name, which may hold spaces).
cpu_ticks() {
	sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}

rss_kib() {
	awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

# Extracts a number from a flat JSON object: json_num KEY JSON
json_num() {
	printf '%s\n' "$2" | sed -n "s/.*\"$1\":\([-0-9.eE+]*\).*/\1/p"
}

# ---- servers ----

"${PIN_SERVER[@]}" "$NODED" master --listen 127.0.0.1:0 --shards "$SHARDS" \
	>"$TMP/noded.out" 2>"$TMP/noded.err" &
NODED_PID=$!
NODED_ADDR=""
for _ in $(seq 100); do
	NODED_ADDR=$(sed -n 's/^listening on //p' "$TMP/noded.out" | head -n1)
	[ -n "$NODED_ADDR" ] && break
	kill -0 "$NODED_PID" 2>/dev/null || break
	sleep 0.1
done
[ -n "$NODED_ADDR" ] || { cat "$TMP/noded.err" >&2; die "noded did not start"; }

# A port nobody listens on; redis-server refusing it is retried (bounded).
REDIS_PORT=""
for _ in $(seq 10); do
	port=$((20000 + RANDOM % 20000))
	if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
		continue  # taken
	fi
	"${PIN_SERVER[@]}" redis-server --port "$port" --bind 127.0.0.1 --save '' \
		--appendonly no --daemonize no --maxclients $((IDLE_CONNS + 64)) \
		>"$TMP/redis.log" 2>&1 &
	REDIS_PID=$!
	for _ in $(seq 50); do
		if [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ]; then
			REDIS_PORT=$port
			break
		fi
		kill -0 "$REDIS_PID" 2>/dev/null || break
		sleep 0.1
	done
	[ -n "$REDIS_PORT" ] && break
	stop_pid "$REDIS_PID"
	REDIS_PID=""
done
[ -n "$REDIS_PORT" ] || { cat "$TMP/redis.log" >&2; die "redis-server did not start"; }

echo "bench.sh: noded $NODED_ADDR (pid $NODED_PID, $SHARDS shard(s)), redis 127.0.0.1:$REDIS_PORT (pid $REDIS_PID), ${DURATION}s per run" >&2

# ---- ping runs ----

ROWS=""     # markdown rows
RUNS_JSON=""

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }

add_row() { # workload metric noded redis
	ROWS="$ROWS| $1 | $2 | $3 | $4 | $(ratio "$3" "$4") |
"
}

for run in $RUNS; do
	IFS=: read -r c d place <<<"$run"
	place=${place:-split}
	case $place in
	split) ccpu=$CLIENT_CPU ;;
	shared) ccpu=$SERVER_CPU ;;
	*) die "RUNS: placement '$place' is neither split nor shared" ;;
	esac

	# noded
	t0=$(cpu_ticks "$NODED_PID")
	nj=$(on_cpu "$ccpu" timeout $((DURATION * 2 + 30)) "$BENCH" ping --addr "$NODED_ADDR" \
		--conns "$c" --depth "$d" --duration "$DURATION" --json) ||
		die "noded-bench ping ${c}x$d failed: $nj"
	t1=$(cpu_ticks "$NODED_PID")
	n_req=$(json_num requests "$nj")
	n_rps=$(json_num rps "$nj")
	n_p50=$(json_num p50_us "$nj")
	n_p99=$(json_num p99_us "$nj")
	n_p999=$(json_num p999_us "$nj")
	n_err=$(json_num errors "$nj")
	n_cpu=$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$n_req" \
		'BEGIN { printf "%.3f", (n > 0 ? t * 1e6 / hz / n : 0) }')

	# redis: calibrate a request count that lasts about DURATION
	cal=$((c * d * 200))
	[ "$cal" -lt 20000 ] && cal=20000
	cal_rps=$(on_cpu "$ccpu" timeout 60 redis-benchmark -h 127.0.0.1 -p "$REDIS_PORT" \
		-t ping_mbulk -c "$c" -P "$d" -n "$cal" --csv 2>/dev/null |
		awk -F'"' 'NR == 2 { print $4 }')
	[ -n "$cal_rps" ] || die "redis-benchmark calibration failed"
	n=$(awk -v r="$cal_rps" -v s="$DURATION" -v c="$c" -v d="$d" \
		'BEGIN { n = int(r * s); if (n < c * d * 10) n = c * d * 10; print n }')
	t0=$(cpu_ticks "$REDIS_PID")
	on_cpu "$ccpu" timeout $((DURATION * 4 + 60)) redis-benchmark -h 127.0.0.1 \
		-p "$REDIS_PORT" -t ping_mbulk -c "$c" -P "$d" -n "$n" \
		2>/dev/null | tr '\r' '\n' >"$TMP/redis-bench.txt" ||
		die "redis-benchmark ${c}x$d failed"
	t1=$(cpu_ticks "$REDIS_PID")
	r_rps=$(awk '/throughput summary:/ { print $3 }' "$TMP/redis-bench.txt")
	r_secs=$(awk '/requests completed in/ { print $(NF - 1); exit }' \
		"$TMP/redis-bench.txt")
	# "avg min p50 p95 p99 max" in ms, on the line after its header
	read -r r_p50 r_p99 < <(awk '/avg +min +p50/ { getline;
		printf "%d %d\n", $3 * 1000 + 0.5, $5 * 1000 + 0.5 }' \
		"$TMP/redis-bench.txt")
	r_p999=$(awk '/Latency by percentile distribution/ { on = 1; next }
		on && NF == 0 { on = 0 }
		on && !done { p = $1; sub("%", "", p);
			if (p + 0 >= 99.9) { printf "%d\n", $3 * 1000 + 0.5; done = 1 } }' \
		"$TMP/redis-bench.txt")
	[ -n "$r_rps" ] && [ -n "$r_p50" ] && [ -n "$r_p999" ] ||
		die "could not parse redis-benchmark output ($TMP/redis-bench.txt)"
	r_cpu=$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$n" \
		'BEGIN { printf "%.3f", t * 1e6 / hz / n }')

	w="ping ${c}x$d $place"
	add_row "$w" "requests/s" "$n_rps" "$r_rps"
	add_row "$w" "p50 us" "$n_p50" "$r_p50"
	add_row "$w" "p99 us" "$n_p99" "$r_p99"
	add_row "$w" "p99.9 us" "$n_p999" "$r_p999"
	add_row "$w" "server CPU us/request" "$n_cpu" "$r_cpu"
	[ "$n_err" = 0 ] || echo "bench.sh: noded run ${c}x$d had $n_err errors" >&2

	RUNS_JSON="$RUNS_JSON${RUNS_JSON:+,}
    {\"conns\": $c, \"depth\": $d, \"placement\": \"$place\",
     \"noded\": {\"bench\": $nj, \"cpu_us_per_req\": $n_cpu},
     \"redis\": {\"requests\": $n, \"duration_s\": ${r_secs:-null}, \"rps\": $r_rps, \"p50_us\": $r_p50, \"p99_us\": $r_p99, \"p999_us\": $r_p999, \"cpu_us_per_req\": $r_cpu}}"
	echo "bench.sh: ${c}x$d: noded $n_rps rps, redis $r_rps rps" >&2
done

# ---- idle connections: RSS per connection ----

# idle_kib PID ADDR [--raw]: sets IDLE_RESULT to "KiB/conn rss_before
# rss_after" for IDLE_CONNS held connections. Runs in this shell (not a
# subshell) so that the EXIT trap knows IDLE_PID.
IDLE_RESULT=""
idle_kib() {
	local pid=$1 addr=$2 before after open=""
	shift 2
	IDLE_RESULT=""
	sleep 0.5
	before=$(rss_kib "$pid")
	"$BENCH" idle --addr "$addr" --conns "$IDLE_CONNS" --hold 120 "$@" \
		>"$TMP/idle.out" 2>"$TMP/idle.err" &
	IDLE_PID=$!
	for _ in $(seq 1200); do  # up to 120 s to open them all
		grep -q '^open ' "$TMP/idle.out" && { open=1; break; }
		kill -0 "$IDLE_PID" 2>/dev/null || break
		sleep 0.1
	done
	if [ -z "$open" ]; then
		cat "$TMP/idle.err" >&2
		stop_pid "$IDLE_PID"
		IDLE_PID=""
		return 1
	fi
	sleep 1  # let the server finish accepting and settle
	after=$(rss_kib "$pid")
	stop_pid "$IDLE_PID"
	IDLE_PID=""
	IDLE_RESULT=$(awk -v a="$after" -v b="$before" -v n="$IDLE_CONNS" \
		'BEGIN { printf "%.2f %d %d\n", (a - b) / n, b, a }')
}

idle_kib "$NODED_PID" "$NODED_ADDR" || die "noded idle test failed"
read -r n_kib n_rss0 n_rss1 <<<"$IDLE_RESULT"
idle_kib "$REDIS_PID" "127.0.0.1:$REDIS_PORT" --raw || die "redis idle test failed"
read -r r_kib r_rss0 r_rss1 <<<"$IDLE_RESULT"
echo "bench.sh: idle: noded RSS $n_rss0 -> $n_rss1 KiB, redis $r_rss0 -> $r_rss1 KiB" >&2
add_row "$IDLE_CONNS idle conns" "server RSS KiB/conn" "$n_kib" "$r_kib"

# ---- report ----

{
	echo
	echo "noded ($SHARDS shard(s)) vs redis-server $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p'), ${DURATION} s per run, $(nproc) CPUs, loopback; servers on CPU $SERVER_CPU, clients on CPU $CLIENT_CPU (split) or $SERVER_CPU (shared)"
	echo
	echo "| workload | metric | noded | redis | noded/redis |"
	echo "|---|---|---:|---:|---:|"
	printf '%s' "$ROWS"
}

cat >"$OUT" <<EOF
{
  "date": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
  "kernel": "$(uname -r)",
  "cpus": $(nproc),
  "duration_s": $DURATION,
  "noded_shards": $SHARDS,
  "redis_version": "$(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p')",
  "runs": [$RUNS_JSON
  ],
  "idle": {"conns": $IDLE_CONNS,
    "noded": {"rss_before_kib": $n_rss0, "rss_after_kib": $n_rss1, "kib_per_conn": $n_kib},
    "redis": {"rss_before_kib": $r_rss0, "rss_after_kib": $r_rss1, "kib_per_conn": $r_kib}}
}
EOF
echo "bench.sh: wrote $OUT" >&2
