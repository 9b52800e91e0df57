#!/usr/bin/env bash
# The benchmark suite: how noded behaves as the fleet grows. Prints one
# markdown table and writes bench-results.json; `--compare OLD.json` also
# prints the change of every figure against an earlier results file.
#
#   scripts/bench.sh [--compare FILE] [--only "ping tasks fanout heartbeats idle queue
#                    durable failover restart tls"]
#
# Workloads (each bounded in time and count; the whole suite takes about
# 4 minutes on 2 vCPUs):
#  ping        noded-bench ping at (C=1,D=1), (C=50,D=1), (C=50,D=16), and
#              redis-benchmark PING on redis-server with the same placement:
#              requests/s, p50/p99/p99.9, server CPU per request.
#  tasks       /bin/true end to end (noded-bench tasks, `run` requests) with one
#              real worker whose slots equal C, against the bare posix_spawn +
#              waitpid loop at the same C (noded-bench spawn): tasks/s, ratio,
#              added p50 latency; medians of TASKS_ROUNDS alternating rounds.
#              The worker and the bare loop get CLIENT_CPU (the node); the
#              client runs beside the master on SERVER_CPU.
#  fanout      `run --all -- true` (noded-bench tasks --all) to 1,000 and to
#              10,000 simulated workers (noded-bench workers --exec fake):
#              time until every result is back, p50 and p99 over FANOUT_REPS.
#  heartbeats  the 10,000 simulated workers of fanout, heartbeating each
#              second: master CPU in % of one core over HB_SECS.
#  idle        IDLE_CONNS connections that said Hello and stay idle: master RSS
#              per connection (redis-server: raw TCP connections).
#  queue       QUEUE_TASKS tasks sent at once (one `run` stream each) to
#              QUEUE_WORKERS fake workers: submit rate, completion rate,
#              master peak RSS (VmHWM), tasks lost, master CPU while it drains;
#              then as many for a label all those workers have; then (when
#              the build has --join) the same on a 3-master cluster with its
#              data under DATA_ROOT, against the in-memory completion rate.
#  durable     one-task submits that wait PENDING for an absent node
#              (noded-bench submit, one connection per client, one submit in
#              flight each) at C = DURABLE_C: submits/s, p50, p99, on a
#              master in memory, on a 1-master and a 3-master cluster with
#              --data-dir (the client on the leader), the 3-master one
#              again on mutual TLS (clients and Raft links), beside etcd 3.4 puts
#              (build/etcd-bench, gRPC, the same C) on a 1- and a 3-member
#              cluster (the client on the leader). Every data directory is
#              under DATA_ROOT, which must not be tmpfs (the output says
#              which filesystem). The 3-master rows need `noded master
#              --join`; without it they say "not available in this build".
#  failover    3 members (noded masters, etcd members): kill -9 the leader,
#              time until the first put/submit the others accept
#              (noded-bench first, etcd-bench first-put: a request every
#              10 ms to each survivor), restart it, FAILOVER_KILLS times:
#              median and worst.
#  restart     a master with --data-dir holding RESTART_TASKS PENDING tasks
#              (submitted to an absent node), killed with -9 and started
#              again RESTART_REPS times: time from start until it answers
#              a task list (noded-bench first --call tasks), median, worst.
#  tls         noded-bench ping over TLS 1.3 (mutual, certificates from `noded
#              tls`) at PING_RUNS against plaintext noded and against
#              redis-server --tls-port (redis-benchmark --tls, TLS 1.3):
#              requests/s, p50/p99, server CPU per request and its ratio to
#              plaintext's; full handshakes per second of server CPU and
#              RSS per idle TLS connection (TLS_IDLE_CONNS, each after Hello),
#              then as many resumed handshakes (noded-bench idle --resume:
#              each connection resumes the session of the one before); then
#              TLS_FLEET simulated workers heartbeating over TLS (a master
#              with a certificate that asks none of its peers: the sim has
#              one certificate, and a worker's names one node) beside the
#              same fleet in plaintext: master CPU over HB_SECS, and RSS.
#
# Placement: each master runs with --shards SHARDS under `taskset -c
# SERVER_CPU`; load generators and simulators run on CLIENT_CPU (but see
# tasks). Server CPU
# is utime+stime from /proc/PID/stat around a run; RSS from /proc/PID/status.
#
# Knobs (environment): DURATION (5) seconds per ping run, SHARDS (1),
# PING_RUNS ("1:1 50:1 50:16"), TASKS_COUNT (1000 per round), TASKS_C (4),
# TASKS_ROUNDS (5), FANOUT_SIZES ("1000 10000"), FANOUT_REPS (20), HB_SECS (10), IDLE_CONNS
# (10000), QUEUE_TASKS (100000), QUEUE_WORKERS (1000), TLS_IDLE_CONNS (2000), TLS_FLEET
# (10000), DURABLE_C ("1 16 64"),
# DURABLE_COUNT (30000 submits at most per run), DURABLE_SECS (5 at most per
# run), FAILOVER_KILLS (10), RESTART_TASKS (100000), RESTART_REPS (3),
# DATA_ROOT (/var/tmp), OUT (bench-results.json), BUILD (build), SERVER_CPU
# (1), CLIENT_CPU (0). Every master, etcd member and cluster of them runs on
# SERVER_CPU (a 3-member cluster shares it), every client on CLIENT_CPU.
# durable and failover need etcd-server and libgrpc++-dev (scripts/deps.sh
# bench); build/etcd-bench is built here.
#
# Every wait is bounded; only the processes started here are stopped, by pid.
set -euo pipefail

cd "$(dirname "$0")/.."

COMPARE=""
ONLY="ping tasks fanout heartbeats idle queue durable failover restart tls"
while [ $# -gt 0 ]; do
	case $1 in
	--compare) COMPARE=${2:?--compare wants a results file}; shift 2 ;;
	--only) ONLY=${2:?--only wants workload names}; shift 2 ;;
	-h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "bench.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
	esac
done
[ -z "$COMPARE" ] || [ -r "$COMPARE" ] || { echo "bench.sh: cannot read $COMPARE" >&2; exit 2; }

DURATION=${DURATION:-5}
SHARDS=${SHARDS:-1}
PING_RUNS=${PING_RUNS:-"1:1 50:1 50:16"}
TASKS_COUNT=${TASKS_COUNT:-1000}
TASKS_ROUNDS=${TASKS_ROUNDS:-5}
TASKS_C=${TASKS_C:-4}
FANOUT_SIZES=${FANOUT_SIZES:-"1000 10000"}
FANOUT_REPS=${FANOUT_REPS:-20}
HB_SECS=${HB_SECS:-10}
IDLE_CONNS=${IDLE_CONNS:-10000}
QUEUE_TASKS=${QUEUE_TASKS:-100000}
QUEUE_WORKERS=${QUEUE_WORKERS:-1000}
DURABLE_C=${DURABLE_C:-"1 16 64"}
DURABLE_COUNT=${DURABLE_COUNT:-30000}
DURABLE_SECS=${DURABLE_SECS:-5}
FAILOVER_KILLS=${FAILOVER_KILLS:-10}
RESTART_TASKS=${RESTART_TASKS:-100000}
RESTART_REPS=${RESTART_REPS:-3}
DATA_ROOT=${DATA_ROOT:-/var/tmp}
TLS_IDLE_CONNS=${TLS_IDLE_CONNS:-2000}
TLS_FLEET=${TLS_FLEET:-10000}
OUT=${OUT:-bench-results.json}
BUILD=${BUILD:-build}
SERVER_CPU=${SERVER_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
BENCH="$BUILD/noded-bench"
NODED="$BUILD/noded"
ETCD_BENCH="$BUILD/etcd-bench"

die() { echo "bench.sh: $*" >&2; exit 1; }
note() { echo "bench.sh: $*" >&2; }
want() { case " $ONLY " in *" $1 "*) return 0 ;; esac; return 1; }

if [ "$(nproc)" -ge 2 ]; then
	PIN_SERVER=(taskset -c "$SERVER_CPU")
	PIN_CLIENT=(taskset -c "$CLIENT_CPU")
else
	PIN_SERVER=()
	PIN_CLIENT=()
fi

for tool in redis-server redis-benchmark redis-cli getconf timeout awk taskset jq; do
	command -v "$tool" >/dev/null 2>&1 || die "$tool not found (run: make deps)"
done
make -s all >/dev/null || die "make all failed"
if want durable || want failover; then
	for tool in etcd curl; do
		command -v "$tool" >/dev/null 2>&1 ||
			die "$tool not found (run: scripts/deps.sh bench)"
	done
	make -s "$ETCD_BENCH" >/dev/null ||
		die "could not build $ETCD_BENCH (run: scripts/deps.sh bench)"
fi

# Enough descriptors for the largest fleet or idle set, here and in the
# servers (children inherit the limit).
big=$IDLE_CONNS
for n in $FANOUT_SIZES $QUEUE_WORKERS; do [ "$n" -gt "$big" ] && big=$n; done
want_fds=$((big + 1024))
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt "$want_fds" ]; then
	die "hard fd limit $hard is below the $want_fds this suite needs (ulimit -Hn)"
fi
ulimit -n "$want_fds"

CLK_TCK=$(getconf CLK_TCK)
TMP=$(mktemp -d /tmp/noded-bench.XXXXXX)
DATA=""          # data directories of durable, failover and restart
DATA_FS=""
ROWS="$TMP/rows.jsonl"
: >"$ROWS"
PIDS=()          # every process started here, stopped on exit

# Stops one of our processes: TERM, up to 5 s, then KILL.
stop_pid() {
	local pid=$1
	[ -n "$pid" ] || return 0
	if kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || true
	forget_pid "$pid"
}

# pid is gone (reaped): its number may be another's from now on.
forget_pid() {
	local p keep=()
	for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
	PIDS=("${keep[@]}")
}

cleanup() {
	local p
	for p in "${PIDS[@]}"; do stop_pid "$p"; done
	rm -rf "$TMP"
	[ -z "$DATA" ] || rm -rf "$DATA"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if want durable || want failover || want restart; then
	DATA=$(mktemp -d "$DATA_ROOT/noded-bench-data.XXXXXX") ||
		die "cannot make a directory under DATA_ROOT=$DATA_ROOT"
	DATA_FS=$(df --output=fstype "$DATA" | tail -n 1 | tr -d ' ')
	if [ "$DATA_FS" = tmpfs ] || [ "$DATA_FS" = ramfs ]; then
		rm -rf "$DATA"
		die "DATA_ROOT=$DATA_ROOT is $DATA_FS: durable figures need a disk"
	fi
fi

cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }
now_s() { date +%s.%N; }
# CPU % of one core used by pid between ticks t0 and t1 over secs
cpu_pct() { awk -v t="$2" -v hz="$CLK_TCK" -v s="$3" 'BEGIN { printf "%.2f", t / hz / s * 100 }'; }
jnum() { jq -r "$2" <<<"$1"; }

# row WORKLOAD METRIC VALUE UNIT [REF_VALUE REF_NAME] [TARGET MET]
# One figure of the table and of bench-results.json.
row() {
	jq -nc --arg w "$1" --arg m "$2" --arg v "$3" --arg u "$4" \
		--arg rv "${5:-}" --arg rn "${6:-}" --arg t "${7:-}" --arg met "${8:-}" \
		'{workload: $w, metric: $m, value: ($v | tonumber), unit: $u,
		  reference: (if $rv == "" then null else ($rv | tonumber) end),
		  reference_name: (if $rn == "" then null else $rn end),
		  target: (if $t == "" then null else $t end),
		  met: (if $met == "" then null else ($met == "yes") end)}' >>"$ROWS"
}

# Starts a master: sets MASTER_PID and MASTER_ADDR. Extra args follow;
# MASTER_LISTEN (default 127.0.0.1:0) is its --listen.
start_master() {
	local out="$TMP/master.$RANDOM"
	"${PIN_SERVER[@]}" "$NODED" master --listen "${MASTER_LISTEN:-127.0.0.1:0}" \
		--shards "$SHARDS" --log-level warn "$@" >"$out.out" 2>"$out.err" &
	MASTER_PID=$!
	PIDS+=("$MASTER_PID")
	MASTER_ADDR=""
	for _ in $(seq 100); do
		MASTER_ADDR=$(sed -n 's/^listening on //p' "$out.out" | head -n1)
		[ -n "$MASTER_ADDR" ] && return 0
		kill -0 "$MASTER_PID" 2>/dev/null || break
		sleep 0.1
	done
	cat "$out.err" >&2
	die "the master did not start"
}

# Starts N simulated workers (fake exec) on MASTER_ADDR and waits until they
# are all registered: sets SIM_PID.
start_sims() {
	local n=$1 slots=${2:-1} out="$TMP/sims.$RANDOM"
	"${PIN_CLIENT[@]}" "$BENCH" workers --addr "$MASTER_ADDR" --count "$n" \
		--slots "$slots" --exec fake "${@:3}" >"$out.out" 2>"$out.err" &
	SIM_PID=$!
	PIDS+=("$SIM_PID")
	for _ in $(seq 1200); do  # up to 120 s
		grep -q '^workers .* registered' "$out.out" && return 0
		kill -0 "$SIM_PID" 2>/dev/null || break
		sleep 0.1
	done
	cat "$out.err" >&2
	die "$n simulated workers did not register"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "" }'; }
yes_if() { awk -v a="$1" -v b="$2" -v op="$3" 'BEGIN {
	ok = (op == "<") ? (a < b) : (a >= b); print (ok ? "yes" : "no") }'; }

# ---- 1. ping: noded against redis ----

bench_ping() {
	local c d nj n_req t0 t1 n_cpu cal cal_rps n r_rps r_p50 r_p99 r_p999 r_cpu w
	start_master
	local port="" rpid=""
	for _ in $(seq 10); do
		port=$((20000 + RANDOM % 20000))
		(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && continue  # taken
		"${PIN_SERVER[@]}" redis-server --port "$port" --bind 127.0.0.1 --save '' \
			--appendonly no --daemonize no --maxclients $((IDLE_CONNS + 64)) \
			>"$TMP/redis.log" 2>&1 &
		rpid=$!
		PIDS+=("$rpid")
		for _ in $(seq 50); do
			[ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ] && break 2
			kill -0 "$rpid" 2>/dev/null || break
			sleep 0.1
		done
		stop_pid "$rpid"
		rpid=""
	done
	[ -n "$rpid" ] || { cat "$TMP/redis.log" >&2; die "redis-server did not start"; }
	REDIS_PID=$rpid
	REDIS_PORT=$port
	PING_MASTER_PID=$MASTER_PID
	PING_MASTER_ADDR=$MASTER_ADDR
	REDIS_VERSION=$(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p')

	for run in $PING_RUNS; do
		IFS=: read -r c d <<<"$run"
		t0=$(cpu_ticks "$MASTER_PID")
		nj=$("${PIN_CLIENT[@]}" timeout $((DURATION * 2 + 30)) "$BENCH" ping \
			--addr "$MASTER_ADDR" --conns "$c" --depth "$d" \
			--duration "$DURATION" --json) || die "noded-bench ping ${c}x$d failed"
		t1=$(cpu_ticks "$MASTER_PID")
		n_req=$(jnum "$nj" .requests)
		n_cpu=$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$n_req" \
			'BEGIN { printf "%.3f", (n > 0 ? t * 1e6 / hz / n : 0) }')

		# redis: a request count that lasts about DURATION
		cal=$((c * d * 200))
		[ "$cal" -lt 20000 ] && cal=20000
		cal_rps=$("${PIN_CLIENT[@]}" timeout 60 redis-benchmark -h 127.0.0.1 \
			-p "$REDIS_PORT" -t ping_mbulk -c "$c" -P "$d" -n "$cal" --csv \
			2>/dev/null | awk -F'"' 'NR == 2 { print $4 }')
		[ -n "$cal_rps" ] || die "redis-benchmark calibration failed"
		n=$(awk -v r="$cal_rps" -v s="$DURATION" -v c="$c" -v d="$d" \
			'BEGIN { n = int(r * s); if (n < c * d * 10) n = c * d * 10; print n }')
		t0=$(cpu_ticks "$REDIS_PID")
		"${PIN_CLIENT[@]}" timeout $((DURATION * 4 + 60)) redis-benchmark \
			-h 127.0.0.1 -p "$REDIS_PORT" -t ping_mbulk -c "$c" -P "$d" -n "$n" \
			2>/dev/null | tr '\r' '\n' >"$TMP/redis-bench.txt" ||
			die "redis-benchmark ${c}x$d failed"
		t1=$(cpu_ticks "$REDIS_PID")
		r_rps=$(awk '/throughput summary:/ { print $3 }' "$TMP/redis-bench.txt")
		read -r r_p50 r_p99 < <(awk '/avg +min +p50/ { getline;
			printf "%d %d\n", $3 * 1000 + 0.5, $5 * 1000 + 0.5 }' \
			"$TMP/redis-bench.txt")
		# redis-benchmark prints no p99.9: the first percentile line at or
		# above 99.9% (slightly pessimistic)
		r_p999=$(awk '/Latency by percentile distribution/ { on = 1; next }
			on && NF == 0 { on = 0 }
			on && !done { p = $1; sub("%", "", p);
				if (p + 0 >= 99.9) { printf "%d\n", $3 * 1000 + 0.5; done = 1 } }' \
			"$TMP/redis-bench.txt")
		[ -n "$r_rps" ] && [ -n "$r_p50" ] && [ -n "$r_p999" ] ||
			die "could not parse redis-benchmark output"
		r_cpu=$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$n" \
			'BEGIN { printf "%.3f", t * 1e6 / hz / n }')

		w="ping C=$c D=$d"
		row "$w" "requests/s" "$(jnum "$nj" .rps)" "1/s" "$r_rps" redis
		row "$w" "p50" "$(jnum "$nj" .p50_us)" "us" "$r_p50" redis
		row "$w" "p99" "$(jnum "$nj" .p99_us)" "us" "$r_p99" redis
		row "$w" "p99.9" "$(jnum "$nj" .p999_us)" "us" "$r_p999" redis
		row "$w" "server CPU per request" "$n_cpu" "us" "$r_cpu" redis
		[ "$(jnum "$nj" .errors)" = 0 ] || note "ping ${c}x$d had $(jnum "$nj" .errors) errors"
		note "ping ${c}x$d: noded $(jnum "$nj" .rps)/s, redis $r_rps/s"
	done
}

# ---- 2. tasks: end to end against the bare spawn loop ----

# median of the numbers given
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
	if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# The worker (and its helpers and commands) has CLIENT_CPU to itself, like
# the bare loop: that CPU is the node. The client runs beside the master on
# SERVER_CPU, standing for the rest of the cluster. TASKS_ROUNDS rounds
# alternate noded and the bare loop, so both meet the same machine (the
# host's load drifts by 20% over seconds here); figures are medians.
bench_tasks() {
	local wpid tj sj i ratios=() n_rate=() b_rate=() n_p50=() b_p50=()
	local n_p99=() b_p99=() added=() errors=0 ratio_v added_v
	start_master
	"${PIN_CLIENT[@]}" "$NODED" worker --master "$MASTER_ADDR" --name bench-worker \
		--slots "$TASKS_C" --log-level warn >"$TMP/worker.out" 2>"$TMP/worker.err" &
	wpid=$!
	PIDS+=("$wpid")
	for _ in $(seq 100); do
		"$NODED" nodes --master "$MASTER_ADDR" 2>/dev/null | grep -q bench-worker && break
		sleep 0.1
	done
	for i in $(seq "$TASKS_ROUNDS"); do
		tj=$("${PIN_SERVER[@]}" timeout 300 "$BENCH" tasks --addr "$MASTER_ADDR" \
			--count "$TASKS_COUNT" --concurrency "$TASKS_C" --json -- /bin/true) ||
			die "noded-bench tasks failed: $tj"
		sj=$("${PIN_CLIENT[@]}" timeout 300 "$BENCH" spawn --count "$TASKS_COUNT" \
			--concurrency "$TASKS_C" --json -- /bin/true) || die "noded-bench spawn failed"
		errors=$((errors + $(jnum "$tj" .errors)))
		n_rate+=("$(jnum "$tj" .per_s)")
		b_rate+=("$(jnum "$sj" .per_s)")
		n_p50+=("$(jnum "$tj" .p50_us)")
		b_p50+=("$(jnum "$sj" .p50_us)")
		n_p99+=("$(jnum "$tj" .p99_us)")
		b_p99+=("$(jnum "$sj" .p99_us)")
		ratios+=("$(awk -v a="${n_rate[-1]}" -v b="${b_rate[-1]}" 'BEGIN { printf "%.3f", a / b }')")
		added+=($(( n_p50[-1] - b_p50[-1] )))
		note "tasks round $i: noded ${n_rate[-1]}/s p50 ${n_p50[-1]} us, bare ${b_rate[-1]}/s p50 ${b_p50[-1]} us, ratio ${ratios[-1]}"
	done
	stop_pid "$wpid"
	stop_pid "$MASTER_PID"
	ratio_v=$(median "${ratios[@]}")
	added_v=$(median "${added[@]}")
	local w="tasks C=$TASKS_C, median of $TASKS_ROUNDS rounds"
	row "$w" "tasks/s" "$(median "${n_rate[@]}")" "1/s" "$(median "${b_rate[@]}")" "bare spawn"
	row "$w" "ratio to bare" "$ratio_v" "x" "" "" ">= 0.90" "$(yes_if "$ratio_v" 0.9 ">=")"
	row "$w" "p50" "$(median "${n_p50[@]}")" "us" "$(median "${b_p50[@]}")" "bare spawn"
	row "$w" "p99" "$(median "${n_p99[@]}")" "us" "$(median "${b_p99[@]}")" "bare spawn"
	row "$w" "added p50" "$added_v" "us" "" "" "< 100 us" "$(yes_if "$added_v" 100 "<")"
	[ "$errors" = 0 ] || note "tasks had $errors errors"
	note "tasks: ratios ${ratios[*]}; added p50 ${added[*]} us"
}

# ---- 3 and 4. fan-out, and heartbeats of the largest fleet ----

bench_fanout() {
	local n fj t0 t1 pct p50_s
	for n in $FANOUT_SIZES; do
		start_master
		start_sims "$n" 1
		sleep 3  # registrations and first status reports settle
		if want heartbeats && [ "$n" = "$(echo $FANOUT_SIZES | awk '{ print $NF }')" ]; then
			t0=$(cpu_ticks "$MASTER_PID")
			sleep "$HB_SECS"
			t1=$(cpu_ticks "$MASTER_PID")
			pct=$(cpu_pct "$MASTER_PID" $((t1 - t0)) "$HB_SECS")
			row "heartbeats $n workers" "master CPU" "$pct" "% of a core" "" "" \
				"< 5%" "$(yes_if "$pct" 5 "<")"
			row "heartbeats $n workers" "master RSS" "$(rss_kib "$MASTER_PID")" "KiB"
			note "heartbeats: $n workers, master CPU $pct% of a core"
		fi
		if want fanout; then
			fj=$(timeout 600 "${PIN_CLIENT[@]}" "$BENCH" tasks --addr "$MASTER_ADDR" \
				--all --count "$FANOUT_REPS" --concurrency 1 --json -- true) ||
				die "fan-out to $n failed: $fj"
			[ "$(jnum "$fj" .tasks)" = $((n * FANOUT_REPS)) ] ||
				die "fan-out to $n: $(jnum "$fj" .tasks) results, want $((n * FANOUT_REPS))"
			p50_s=$(awk -v u="$(jnum "$fj" .p50_us)" 'BEGIN { printf "%.3f", u / 1e6 }')
			row "fan-out to $n" "all results back, p50" "$p50_s" "s" "" "" \
				"$([ "$n" = 10000 ] && echo "< 1 s")" \
				"$([ "$n" = 10000 ] && yes_if "$p50_s" 1 "<")"
			row "fan-out to $n" "all results back, p99" \
				"$(awk -v u="$(jnum "$fj" .p99_us)" 'BEGIN { printf "%.3f", u / 1e6 }')" "s"
			note "fan-out to $n: p50 ${p50_s}s"
		fi
		stop_pid "$SIM_PID"
		stop_pid "$MASTER_PID"
	done
}

# ---- 5. idle connections ----

# idle_kib PID ADDR [--raw]: prints "KiB/conn rss_before rss_after".
idle_kib() {
	local pid=$1 addr=$2 before after ipid open=""
	shift 2
	sleep 0.5
	before=$(rss_kib "$pid")
	"${PIN_CLIENT[@]}" "$BENCH" idle --addr "$addr" --conns "$IDLE_CONNS" \
		--hold 120 "$@" >"$TMP/idle.out" 2>"$TMP/idle.err" &
	ipid=$!
	PIDS+=("$ipid")
	for _ in $(seq 1200); do
		grep -q '^open ' "$TMP/idle.out" && { open=1; break; }
		kill -0 "$ipid" 2>/dev/null || break
		sleep 0.1
	done
	[ -n "$open" ] || { cat "$TMP/idle.err" >&2; return 1; }
	sleep 1
	after=$(rss_kib "$pid")
	stop_pid "$ipid"
	awk -v a="$after" -v b="$before" -v n="$IDLE_CONNS" \
		'BEGIN { printf "%.2f %d %d\n", (a - b) / n, b, a }'
}

bench_idle() {
	local n r
	[ -n "${PING_MASTER_PID:-}" ] || die "idle runs after ping (its master and redis)"
	n=$(idle_kib "$PING_MASTER_PID" "$PING_MASTER_ADDR") || die "noded idle test failed"
	r=$(idle_kib "$REDIS_PID" "127.0.0.1:$REDIS_PORT" --raw) || die "redis idle test failed"
	read -r n_kib n_rss0 n_rss1 <<<"$n"
	read -r r_kib _ _ <<<"$r"
	row "$IDLE_CONNS idle connections" "master RSS per connection" "$n_kib" "KiB" \
		"$r_kib" redis "< 4 KiB" "$(yes_if "$n_kib" 4 "<")"
	note "idle: noded RSS $n_rss0 -> $n_rss1 KiB"
}

# ---- 6. a queue of tasks sent at once ----

bench_queue() {
	local qj t0 t1 secs pct hwm lost w label
	start_master
	start_sims "$QUEUE_WORKERS" 1 --label pool=q
	sleep 2
	# any node, then every task for the label all the workers have
	for label in "" pool=q; do
		t0=$(cpu_ticks "$MASTER_PID")
		qj=$(timeout 600 "${PIN_CLIENT[@]}" "$BENCH" tasks --addr "$MASTER_ADDR" \
			--count "$QUEUE_TASKS" --concurrency "$QUEUE_TASKS" \
			${label:+--label "$label"} --json -- true) ||
			die "queue of $QUEUE_TASKS${label:+ for $label} failed: $qj"
		t1=$(cpu_ticks "$MASTER_PID")
		hwm=$(hwm_kib "$MASTER_PID")
		secs=$(jnum "$qj" .seconds)
		pct=$(cpu_pct "$MASTER_PID" $((t1 - t0)) "$secs")
		lost=$((QUEUE_TASKS - $(jnum "$qj" .tasks) + $(jnum "$qj" .errors)))
		w="queue $QUEUE_TASKS tasks${label:+ for label $label}, $QUEUE_WORKERS workers"
		row "$w" "submit rate" "$(jnum "$qj" .submit_per_s)" "tasks/s"
		row "$w" "completion rate" "$(jnum "$qj" .per_s)" "tasks/s"
		row "$w" "master peak RSS" "$((hwm / 1024))" "MiB" "" "" "< 200 MiB" \
			"$(yes_if "$((hwm / 1024))" 200 "<")"
		row "$w" "tasks lost or failed" "$lost" "tasks" "" "" "0" "$([ "$lost" = 0 ] && echo yes || echo no)"
		row "$w" "master CPU while draining" "$pct" "% of a core"
		note "queue${label:+ for $label}: submit $(jnum "$qj" .submit_per_s)/s, completion $(jnum "$qj" .per_s)/s, peak RSS $((hwm / 1024)) MiB"
	done
	stop_pid "$SIM_PID"
	stop_pid "$MASTER_PID"
	[ -n "$HAVE_JOIN" ] && queue_cluster
}

# The same queue (any node) on a 3-master cluster (every task through the
# Raft log, fsync'd), the workers and the client on its leader, against
# the in-memory master's completion rate above (goal: at least half).
queue_cluster() {
	local qj dir w mem
	dir=$(mktemp -d "$DATA_ROOT/noded-bench-queue3.XXXXXX") ||
		die "cannot make a directory under DATA_ROOT=$DATA_ROOT"
	start_three "$dir" "queue on 3 masters"
	MASTER_ADDR=$LEADER_ADDR
	start_sims "$QUEUE_WORKERS" 1
	sleep 2
	qj=$(timeout 900 "${PIN_CLIENT[@]}" "$BENCH" tasks --addr "$MASTER_ADDR" \
		--count "$QUEUE_TASKS" --concurrency "$QUEUE_TASKS" --json -- true) ||
		die "queue of $QUEUE_TASKS on 3 masters failed: $qj"
	mem=$(jq -r --arg w "queue $QUEUE_TASKS tasks, $QUEUE_WORKERS workers" \
		'select(.workload == $w and .metric == "completion rate") | .value' \
		"$ROWS" 2>/dev/null | head -n1)
	w="queue $QUEUE_TASKS tasks on 3 masters, $QUEUE_WORKERS workers"
	row "$w" "submit rate" "$(jnum "$qj" .submit_per_s)" "tasks/s"
	row "$w" "completion rate" "$(jnum "$qj" .per_s)" "tasks/s" "$mem" \
		"in-memory master" ">= 0.5 x in memory" \
		"$([ -n "$mem" ] && yes_if "$(awk -v a="$(jnum "$qj" .per_s)" -v b="$mem" \
			'BEGIN { printf "%.3f", a / b }')" 0.5 ">=")"
	row "$w" "tasks lost or failed" \
		"$((QUEUE_TASKS - $(jnum "$qj" .tasks) + $(jnum "$qj" .errors)))" "tasks" \
		"" "" "0"
	note "queue on 3 masters: completion $(jnum "$qj" .per_s)/s (in memory: ${mem:-?}/s)"
	stop_pid "$SIM_PID"
	stop_masters
	rm -rf "$dir"
}

# ---- 7. durable submits, failover and restart: noded against etcd ----

# A TCP port nothing listens on now (the start that takes it may still
# lose a race; the callers check that what they started runs).
free_port() {
	local p
	for _ in $(seq 100); do
		p=$((20000 + RANDOM % 20000))
		(exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && continue
		ss -Htan "( sport = :$p )" 2>/dev/null | grep -q . && continue
		echo "$p"
		return 0
	done
	return 1
}

# (grep -q reads a string, not a pipe: under pipefail the writer killed by
# SIGPIPE would fail the match)
HAVE_JOIN=""
grep -q -- --join <<<"$("$NODED" master --help 2>&1)" && HAVE_JOIN=1

# noded masters with --data-dir under DIR: N=1 a lone master, N=3 the
# first bootstraps and the others --join it, each with a fixed Raft port.
# Sets M_PID[], M_ADDR[], M_RAFT[], M_DIR[] and waits (bounded) until the
# cluster has N voters and a leader.
start_masters() {
	local n=$1 dir=$2 k rp voters=0
	M_PID=() M_ADDR=() M_RAFT=() M_DIR=()
	for k in $(seq 0 $((n - 1))); do
		rp=$(free_port) || die "no free port"
		M_RAFT[k]=127.0.0.1:$rp
		M_DIR[k]=$dir/m$k
		if [ "$n" = 1 ]; then
			start_master --data-dir "${M_DIR[k]}" "${M_OPTS[@]}"
		elif [ "$k" = 0 ]; then
			start_master --data-dir "${M_DIR[k]}" --raft-listen "${M_RAFT[k]}" --bootstrap \
				"${M_OPTS[@]}"
		else
			start_master --data-dir "${M_DIR[k]}" --raft-listen "${M_RAFT[k]}" \
				--join "${M_ADDR[0]}" "${M_OPTS[@]}"
		fi
		M_PID[k]=$MASTER_PID
		M_ADDR[k]=$MASTER_ADDR
	done
	[ "$n" = 1 ] && return 0
	for _ in $(seq 300); do  # up to 30 s
		voters=$("$NODED" operator raft list-peers --master "$(masters_csv)" --json \
			2>/dev/null | jq '[.[] | select(.voter)] | length' 2>/dev/null || echo 0)
		[ "$voters" = "$n" ] && [ -n "$(master_leader)" ] && return 0
		sleep 0.1
	done
	die "the $n masters did not form a cluster ($voters voters)"
}

masters_csv() { local IFS=,; echo "${M_ADDR[*]}"; }

# The index in M_ADDR of the master that leads, or "".
master_leader() {
	local a k
	a=$("$NODED" operator raft list-peers --master "$(masters_csv)" --json 2>/dev/null |
		jq -r '.[] | select(.state == "leader") | .client_address' 2>/dev/null) || return 0
	for k in "${!M_ADDR[@]}"; do
		[ "${M_ADDR[k]}" = "$a" ] && { echo "$k"; return 0; }
	done
}

stop_masters() { local p; for p in "${M_PID[@]}"; do stop_pid "$p"; done; }

# start_three DIR WHAT: 3 masters with their data under DIR (start_masters),
# and LEADER_ADDR the client address of the one that leads; WHAT names
# them if none does.
start_three() {
	local k
	start_masters 3 "$1"
	k=$(master_leader)
	[ -n "$k" ] || die "$2: no leader among the 3 masters"
	LEADER_ADDR=${M_ADDR[k]}
}

# etcd members with their data under DIR: sets E_PID[], E_CLIENT[],
# E_PEER[] and waits (bounded) until every one is healthy (has a leader).
start_etcd() {
	local n=$1 k cp pp
	E_DIR=$2 E_CLUSTER="" E_PID=() E_CLIENT=() E_PEER=()
	mkdir -p "$E_DIR"
	for k in $(seq 0 $((n - 1))); do
		cp=$(free_port) && pp=$(free_port) || die "no free port"
		E_CLIENT[k]=127.0.0.1:$cp
		E_PEER[k]=127.0.0.1:$pp
		E_CLUSTER+="${E_CLUSTER:+,}e$k=http://127.0.0.1:$pp"
	done
	for k in $(seq 0 $((n - 1))); do etcd_run "$k"; done
	for k in $(seq 0 $((n - 1))); do etcd_wait "$k"; done
}

# Starts member k (again: its data directory holds the cluster).
etcd_run() {
	local k=$1
	"${PIN_SERVER[@]}" etcd --name "e$k" --data-dir "$E_DIR/e$k" \
		--listen-client-urls "http://${E_CLIENT[k]}" \
		--advertise-client-urls "http://${E_CLIENT[k]}" \
		--listen-peer-urls "http://${E_PEER[k]}" \
		--initial-advertise-peer-urls "http://${E_PEER[k]}" \
		--initial-cluster "$E_CLUSTER" --initial-cluster-state new \
		--initial-cluster-token noded-bench --logger zap --log-level error \
		>>"$E_DIR/e$k.log" 2>&1 &
	E_PID[k]=$!
	PIDS+=("${E_PID[k]}")
}

etcd_wait() {
	local k=$1
	for _ in $(seq 300); do  # up to 30 s
		grep -q '"health":"true"' <<<"$(curl -s -m 1 \
			"http://${E_CLIENT[k]}/health" 2>/dev/null)" && return 0
		kill -0 "${E_PID[k]}" 2>/dev/null || break
		sleep 0.1
	done
	tail -n 20 "$E_DIR/e$k.log" >&2
	die "etcd member e$k did not become healthy"
}

# The index of the etcd member that leads, or "".
etcd_leader() {
	local k
	for k in "${!E_CLIENT[@]}"; do
		grep -q '^etcd_server_is_leader 1' <<<"$(curl -s -m 1 \
			"http://${E_CLIENT[k]}/metrics" 2>/dev/null)" && { echo "$k"; return 0; }
	done
}

stop_etcd() { local p; for p in "${E_PID[@]}"; do stop_pid "$p"; done; }

# submit_run ADDR C: noded-bench submit JSON (one submit in flight on each
# of C connections).
# Extra options of the masters start_masters starts, and of the submits
# submit_run makes (the mutual-TLS row sets both).
M_OPTS=()
B_OPTS=()

submit_run() {
	"${PIN_CLIENT[@]}" timeout $((DURABLE_SECS * 4 + 60)) "$BENCH" submit --addr "$1" \
		--conns "$2" --count "$DURABLE_COUNT" --duration "$DURABLE_SECS" --json \
		"${B_OPTS[@]}" ||
		die "noded-bench submit to $1 at C=$2 failed"
}

put_run() {
	"${PIN_CLIENT[@]}" timeout $((DURABLE_SECS * 4 + 60)) "$ETCD_BENCH" put \
		--endpoints "$1" --conns "$2" --count "$DURABLE_COUNT" \
		--duration "$DURABLE_SECS" --json || die "etcd-bench put to $1 at C=$2 failed"
}

# durable_rows C WHAT NODED_JSON [ETCD_JSON ETCD_NAME]: submits/s, p50, p99
# of one setup at C (etcd's puts as the reference).
durable_rows() {
	local c=$1 what=$2 nj=$3 ej=${4:-} en=${5:-} w="durable submit C=$c" rate
	rate=$(jnum "$nj" .per_s)
	if [ -n "$ej" ]; then
		row "$w" "$what submits/s" "$rate" "1/s" "$(jnum "$ej" .per_s)" "$en" \
			"> etcd" "$(yes_if "$rate" "$(jnum "$ej" .per_s)" ">=")"
		row "$w" "$what p50" "$(jnum "$nj" .p50_us)" "us" "$(jnum "$ej" .p50_us)" "$en"
		row "$w" "$what p99" "$(jnum "$nj" .p99_us)" "us" "$(jnum "$ej" .p99_us)" "$en"
	else
		row "$w" "$what submits/s" "$rate" "1/s"
		row "$w" "$what p50" "$(jnum "$nj" .p50_us)" "us"
		row "$w" "$what p99" "$(jnum "$nj" .p99_us)" "us"
	fi
}

# tls_durable_rows C TLS_JSON PLAIN_JSON: the 3 masters on mutual TLS
# (clients and Raft links) beside the same on plaintext.
tls_durable_rows() {
	local w="durable submit C=$1" tj=$2 pj=$3
	row "$w" "3-master on mutual TLS submits/s" "$(jnum "$tj" .per_s)" "1/s" \
		"$(jnum "$pj" .per_s)" "3-master plaintext"
	row "$w" "3-master on mutual TLS p50" "$(jnum "$tj" .p50_us)" "us" \
		"$(jnum "$pj" .p50_us)" "3-master plaintext"
	row "$w" "3-master on mutual TLS p99" "$(jnum "$tj" .p99_us)" "us" \
		"$(jnum "$pj" .p99_us)" "3-master plaintext"
}

# An etcd figure with no noded one beside it (noded's not available).
etcd_only_rows() {
	local w="durable submit C=$1" what=$2 ej=$3
	row "$w" "etcd $what put/s (noded: not available in this build)" "$(jnum "$ej" .per_s)" "1/s"
	row "$w" "etcd $what p50" "$(jnum "$ej" .p50_us)" "us"
	row "$w" "etcd $what p99" "$(jnum "$ej" .p99_us)" "us"
}

bench_durable() {
	local c mem_addr n1 n3="" n3t="" e1 e3 leader td="$TMP/durable-tls"
	declare -A MEM ONE THREE THREE_TLS E1 E3
	# in memory
	start_master
	mem_addr=$MASTER_ADDR
	for c in $DURABLE_C; do MEM[$c]=$(submit_run "$mem_addr" "$c"); done
	stop_pid "$MASTER_PID"
	# 1 master, 1 etcd member
	start_masters 1 "$DATA/durable1"
	n1=${M_ADDR[0]}
	for c in $DURABLE_C; do ONE[$c]=$(submit_run "$n1" "$c"); done
	stop_masters
	start_etcd 1 "$DATA/etcd1"
	e1=${E_CLIENT[0]}
	for c in $DURABLE_C; do E1[$c]=$(put_run "$e1" "$c"); done
	stop_etcd
	# 3 of each, the client on the leader
	if [ -n "$HAVE_JOIN" ]; then
		start_three "$DATA/durable3" "durable"
		n3=$LEADER_ADDR
		for c in $DURABLE_C; do THREE[$c]=$(submit_run "$n3" "$c"); done
		stop_masters
		# the same on mutual TLS: clients, and the Raft links between
		# the masters (certificates from `noded tls`)
		mkdir -p "$td"
		if "$NODED" tls ca create --dir "$td/ca" --cluster bench >/dev/null; then
			"$NODED" tls cert create --master m --ca-dir "$td/ca" \
				--out-dir "$td" >/dev/null &&
			"$NODED" tls cert create --client bench --ca-dir "$td/ca" \
				--out-dir "$td" >/dev/null || die "noded tls cert create failed"
			export NODED_TLS_CERT="$td/client-bench.crt" NODED_TLS_KEY="$td/client-bench.key" \
				NODED_TLS_CA="$td/ca/ca.crt"
			B_OPTS=(--tls-ca "$td/ca/ca.crt" --tls-cert "$td/client-bench.crt"
				--tls-key "$td/client-bench.key")
			M_OPTS=(--tls-cert "$td/master-m.crt" --tls-key "$td/master-m.key"
				--tls-ca "$td/ca/ca.crt")
			start_three "$DATA/durable3-tls" "durable on mutual TLS"
			n3t=$LEADER_ADDR
			for c in $DURABLE_C; do THREE_TLS[$c]=$(submit_run "$n3t" "$c"); done
			stop_masters
			M_OPTS=() B_OPTS=()
			unset NODED_TLS_CERT NODED_TLS_KEY NODED_TLS_CA
		else
			note "3-master on mutual TLS: noded tls ca create failed"
		fi
	else
		note "3-master: not available in this build (no master --join)"
	fi
	start_etcd 3 "$DATA/etcd3"
	leader=$(etcd_leader)
	[ -n "$leader" ] || die "no leader among the 3 etcd members"
	e3=${E_CLIENT[leader]}
	for c in $DURABLE_C; do E3[$c]=$(put_run "$e3" "$c"); done
	stop_etcd

	for c in $DURABLE_C; do
		durable_rows "$c" "in memory" "${MEM[$c]}"
		durable_rows "$c" "1-master" "${ONE[$c]}" "${E1[$c]}" "etcd 1-member"
		if [ -n "$n3" ]; then
			durable_rows "$c" "3-master" "${THREE[$c]}" "${E3[$c]}" "etcd 3-member"
			[ -z "$n3t" ] || tls_durable_rows "$c" "${THREE_TLS[$c]}" "${THREE[$c]}"
		else
			etcd_only_rows "$c" "3-member" "${E3[$c]}"
		fi
		note "durable C=$c: in memory $(jnum "${MEM[$c]}" .per_s)/s, 1-master $(jnum "${ONE[$c]}" .per_s)/s (etcd $(jnum "${E1[$c]}" .per_s)/s)${n3:+, 3-master $(jnum "${THREE[$c]}" .per_s)/s} (etcd 3-member $(jnum "${E3[$c]}" .per_s)/s)"
	done
}

# etcd: kill -9 the leader, ms until a survivor takes a put; the killed
# member is started again and every member is healthy before the next.
failover_etcd() {
	local i k t0 eps ms out=()
	start_etcd 3 "$DATA/failover-etcd"
	for i in $(seq "$FAILOVER_KILLS"); do
		k=""
		for _ in $(seq 100); do k=$(etcd_leader); [ -n "$k" ] && break; sleep 0.1; done
		[ -n "$k" ] || die "etcd: no leader before kill $i"
		eps=$(for j in "${!E_CLIENT[@]}"; do [ "$j" = "$k" ] || echo "${E_CLIENT[j]}"; done |
			paste -sd,)
		t0=$(date +%s%N)
		kill -KILL "${E_PID[k]}"
		ms=$("${PIN_CLIENT[@]}" "$ETCD_BENCH" first-put --endpoints "$eps" --since-ns "$t0" \
			--timeout 60 | jq -r .ms) || die "etcd: no put accepted after kill $i"
		wait "${E_PID[k]}" 2>/dev/null || true
		forget_pid "${E_PID[k]}"
		out+=("$ms")
		note "failover etcd $i: ${ms} ms"
		etcd_run "$k"
		for j in "${!E_CLIENT[@]}"; do etcd_wait "$j"; done
		sleep 1
	done
	stop_etcd
	FO_ETCD=("${out[@]}")
}

# noded: the same with 3 masters; the killed one comes back on its
# addresses and data directory.
failover_noded() {
	local i k t0 addrs ms out=() rp
	start_masters 3 "$DATA/failover-noded"
	for i in $(seq "$FAILOVER_KILLS"); do
		k=""
		for _ in $(seq 100); do k=$(master_leader); [ -n "$k" ] && break; sleep 0.1; done
		[ -n "$k" ] || die "noded: no leader before kill $i"
		addrs=$(for j in "${!M_ADDR[@]}"; do [ "$j" = "$k" ] || echo "${M_ADDR[j]}"; done |
			paste -sd,)
		t0=$(date +%s%N)
		kill -KILL "${M_PID[k]}"
		ms=$("${PIN_CLIENT[@]}" "$BENCH" first --addr "$addrs" --since-ns "$t0" \
			--timeout 60 | jq -r .ms) || die "noded: no submit accepted after kill $i"
		wait "${M_PID[k]}" 2>/dev/null || true
		forget_pid "${M_PID[k]}"
		out+=("$ms")
		note "failover noded $i: ${ms} ms"
		MASTER_LISTEN=${M_ADDR[k]} start_master --data-dir "${M_DIR[k]}" \
			--raft-listen "${M_RAFT[k]}"
		M_PID[k]=$MASTER_PID
		# back in the cluster: it answers with a leader, and has caught up
		for _ in $(seq 300); do
			"$NODED" operator raft list-peers --master "${M_ADDR[k]}" --json 2>/dev/null |
				jq -e 'any(.[]; .state == "leader")' >/dev/null 2>&1 && break
			sleep 0.1
		done
		sleep 1
	done
	stop_masters
	FO_NODED=("${out[@]}")
}

bench_failover() {
	local w="failover: kill -9 the leader of 3, $FAILOVER_KILLS kills" em ew nm nw
	FO_ETCD=() FO_NODED=()
	failover_etcd
	em=$(median "${FO_ETCD[@]}")
	ew=$(printf '%s\n' "${FO_ETCD[@]}" | sort -g | tail -n 1)
	if [ -n "$HAVE_JOIN" ]; then
		failover_noded
		nm=$(median "${FO_NODED[@]}")
		nw=$(printf '%s\n' "${FO_NODED[@]}" | sort -g | tail -n 1)
		row "$w" "first accepted submit, median" "$nm" "ms" "$em" "etcd put" \
			"< etcd median" "$(yes_if "$nm" "$em" "<")"
		row "$w" "first accepted submit, worst" "$nw" "ms" "$ew" "etcd put"
		note "failover: noded ${FO_NODED[*]} ms; etcd ${FO_ETCD[*]} ms"
	else
		note "noded failover: not available in this build (no master --join)"
		row "$w" "etcd first accepted put, median (noded: not available in this build)" "$em" "ms"
		row "$w" "etcd first accepted put, worst" "$ew" "ms"
		note "failover: etcd ${FO_ETCD[*]} ms"
	fi
}

# A master holding RESTART_TASKS PENDING tasks (submitted to an absent
# node) killed with -9 and started again: ms from its start until it
# answers a task list, which it does only once its ledger is loaded.
bench_restart() {
	local dir="$DATA/restart" sj i t0 ms out=() addr n m w
	start_master --data-dir "$dir" --max-queue $((RESTART_TASKS + 1000))
	sj=$("${PIN_CLIENT[@]}" timeout 600 "$BENCH" submit --addr "$MASTER_ADDR" --conns 16 \
		--count "$RESTART_TASKS" --duration 500 --json) ||
		die "submitting $RESTART_TASKS tasks failed"
	[ "$(jnum "$sj" .requests)" = "$RESTART_TASKS" ] || die "only $(jnum "$sj" .requests) submitted"
	for i in $(seq "$RESTART_REPS"); do
		kill -KILL "$MASTER_PID"
		wait "$MASTER_PID" 2>/dev/null || true
		forget_pid "$MASTER_PID"
		local out_f="$TMP/restart.$i"
		t0=$(date +%s%N)
		"${PIN_SERVER[@]}" "$NODED" master --listen 127.0.0.1:0 --shards "$SHARDS" \
			--log-level info --data-dir "$dir" --max-queue $((RESTART_TASKS + 1000)) \
			>"$out_f.out" 2>"$out_f.err" &
		MASTER_PID=$!
		PIDS+=("$MASTER_PID")
		addr=""
		for _ in $(seq 3000); do  # up to 30 s
			addr=$(sed -n 's/^listening on //p' "$out_f.out" | head -n1)
			[ -n "$addr" ] && break
			kill -0 "$MASTER_PID" 2>/dev/null || break
			sleep 0.01
		done
		[ -n "$addr" ] || { cat "$out_f.err" >&2; die "the master did not start again"; }
		ms=$("${PIN_CLIENT[@]}" "$BENCH" first --call tasks --every-ms 5 --addr "$addr" \
			--since-ns "$t0" --timeout 60 | jq -r .ms) ||
			die "the restarted master did not serve"
		n=$(sed -n 's/.*event=raft.serving.* tasks=\([0-9]*\).*/\1/p' "$out_f.err" | head -n1)
		[ "$n" = "$RESTART_TASKS" ] ||
			die "the restarted master holds ${n:-?} tasks, want $RESTART_TASKS"
		out+=("$ms")
		note "restart $i: serving after $ms ms with $n tasks"
	done
	stop_pid "$MASTER_PID"
	m=$(median "${out[@]}")
	w="restart: $RESTART_TASKS PENDING tasks in the log, kill -9, start, $RESTART_REPS times"
	row "$w" "serving (answers a task list), median" "$m" "ms" "" "" "< 1000 ms" \
		"$(yes_if "$m" 1000 "<")"
	row "$w" "serving, worst" "$(printf '%s\n' "${out[@]}" | sort -g | tail -n 1)" "ms"
	row "$w" "submit rate filling it (C=16, durable)" "$(jnum "$sj" .per_s)" "1/s"
}

# ---- 7. tls: ping over TLS 1.3, against plaintext noded and redis with TLS ----

# noded-bench ping at C, D against ADDR (more args: TLS files) with the
# master PID's CPU around it: prints the JSON, then the CPU per request in us.
ping_cpu() {
	local pid=$1 addr=$2 c=$3 d=$4 t0 t1 j
	shift 4
	t0=$(cpu_ticks "$pid")
	j=$("${PIN_CLIENT[@]}" timeout $((DURATION * 2 + 30)) "$BENCH" ping \
		--addr "$addr" --conns "$c" --depth "$d" --duration "$DURATION" \
		--json "$@") || die "noded-bench ping ${c}x$d $* failed"
	t1=$(cpu_ticks "$pid")
	echo "$j"
	awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$(jnum "$j" .requests)" \
		'BEGIN { printf "%.3f\n", (n > 0 ? t * 1e6 / hz / n : 0) }'
}

# tls_idle_open WHAT ARGS...: TLS_IDLE_CONNS connections of noded-bench
# idle ARGS to the master, held open; returns once all are (sets ipid).
tls_idle_open() {
	local what=$1
	shift
	: >"$TMP/tls-idle.out"
	"${PIN_CLIENT[@]}" "$BENCH" idle --addr "$MASTER_ADDR" --conns "$TLS_IDLE_CONNS" \
		--hold 600 "$@" >"$TMP/tls-idle.out" 2>"$TMP/tls-idle.err" &
	ipid=$!
	PIDS+=("$ipid")
	for _ in $(seq 1200); do
		grep -q '^open ' "$TMP/tls-idle.out" && break
		kill -0 "$ipid" 2>/dev/null || break
		sleep 0.1
	done
	grep -q '^open ' "$TMP/tls-idle.out" || { cat "$TMP/tls-idle.err" >&2; die "$what did not open"; }
}

bench_tls() {
	local ipid dir="$TMP/tls" tls=() rtls=() c d out pj p_cpu tj t_cpu cal cal_rps
	local n t0 t1 r_rps r_p50 r_p99 r_cpu w port="" rpid="" plain_pid plain_addr
	local rss0 rss1 secs
	mkdir -p "$dir"
	"$NODED" tls ca create --dir "$dir/ca" --cluster bench >/dev/null &&
	"$NODED" tls cert create --master m --ca-dir "$dir/ca" --out-dir "$dir" >/dev/null &&
	"$NODED" tls cert create --client bench --ca-dir "$dir/ca" --out-dir "$dir" \
		>/dev/null || die "noded tls could not make the certificates"
	tls=(--tls-ca "$dir/ca/ca.crt" --tls-cert "$dir/client-bench.crt"
	     --tls-key "$dir/client-bench.key")
	rtls=(--tls --cacert "$dir/ca/ca.crt" --cert "$dir/client-bench.crt"
	      --key "$dir/client-bench.key")
	start_master
	plain_pid=$MASTER_PID
	plain_addr=$MASTER_ADDR
	start_master --tls-cert "$dir/master-m.crt" --tls-key "$dir/master-m.key" \
		--tls-ca "$dir/ca/ca.crt"
	for _ in $(seq 10); do
		port=$((20000 + RANDOM % 20000))
		(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && continue  # taken
		"${PIN_SERVER[@]}" redis-server --port 0 --tls-port "$port" \
			--bind 127.0.0.1 --save '' --appendonly no --daemonize no \
			--tls-cert-file "$dir/master-m.crt" --tls-key-file "$dir/master-m.key" \
			--tls-ca-cert-file "$dir/ca/ca.crt" --tls-protocols TLSv1.3 \
			>"$TMP/redis-tls.log" 2>&1 &
		rpid=$!
		PIDS+=("$rpid")
		for _ in $(seq 50); do
			[ "$(redis-cli "${rtls[@]}" -p "$port" ping 2>/dev/null)" = PONG ] && break 2
			kill -0 "$rpid" 2>/dev/null || break
			sleep 0.1
		done
		stop_pid "$rpid"
		rpid=""
	done
	[ -n "$rpid" ] || { cat "$TMP/redis-tls.log" >&2; die "redis-server --tls-port did not start"; }
	[ -n "$REDIS_VERSION" ] || REDIS_VERSION=$(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p')

	for run in $PING_RUNS; do
		IFS=: read -r c d <<<"$run"
		out=$(ping_cpu "$plain_pid" "$plain_addr" "$c" "$d")
		pj=$(head -n1 <<<"$out"); p_cpu=$(tail -n1 <<<"$out")
		out=$(ping_cpu "$MASTER_PID" "$MASTER_ADDR" "$c" "$d" "${tls[@]}")
		tj=$(head -n1 <<<"$out"); t_cpu=$(tail -n1 <<<"$out")

		cal=$((c * d * 200))
		[ "$cal" -lt 20000 ] && cal=20000
		cal_rps=$("${PIN_CLIENT[@]}" timeout 60 redis-benchmark "${rtls[@]}" \
			-h 127.0.0.1 -p "$port" -t ping_mbulk -c "$c" -P "$d" -n "$cal" \
			--csv 2>/dev/null | awk -F'"' 'NR == 2 { print $4 }')
		[ -n "$cal_rps" ] || die "redis-benchmark --tls calibration failed"
		n=$(awk -v r="$cal_rps" -v s="$DURATION" -v c="$c" -v d="$d" \
			'BEGIN { n = int(r * s); if (n < c * d * 10) n = c * d * 10; print n }')
		t0=$(cpu_ticks "$rpid")
		"${PIN_CLIENT[@]}" timeout $((DURATION * 4 + 60)) redis-benchmark \
			"${rtls[@]}" -h 127.0.0.1 -p "$port" -t ping_mbulk -c "$c" -P "$d" \
			-n "$n" 2>/dev/null | tr '\r' '\n' >"$TMP/redis-tls-bench.txt" ||
			die "redis-benchmark --tls ${c}x$d failed"
		t1=$(cpu_ticks "$rpid")
		r_rps=$(awk '/throughput summary:/ { print $3 }' "$TMP/redis-tls-bench.txt")
		read -r r_p50 r_p99 < <(awk '/avg +min +p50/ { getline;
			printf "%d %d\n", $3 * 1000 + 0.5, $5 * 1000 + 0.5 }' \
			"$TMP/redis-tls-bench.txt")
		[ -n "$r_rps" ] && [ -n "$r_p50" ] ||
			die "could not parse redis-benchmark --tls output"
		r_cpu=$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$n" \
			'BEGIN { printf "%.3f", t * 1e6 / hz / n }')

		w="tls ping C=$c D=$d"
		row "$w" "requests/s" "$(jnum "$tj" .rps)" "1/s" "$r_rps" redis-tls \
			"ahead of redis-tls" "$(yes_if "$(jnum "$tj" .rps)" "$r_rps" ">=")"
		row "$w" "p50" "$(jnum "$tj" .p50_us)" "us" "$r_p50" redis-tls
		row "$w" "p99" "$(jnum "$tj" .p99_us)" "us" "$r_p99" redis-tls
		row "$w" "server CPU per request" "$t_cpu" "us" "$r_cpu" redis-tls \
			"below redis-tls" "$(yes_if "$t_cpu" "$r_cpu" "<")"
		if [ "$c" -ge 50 ]; then
			row "$w" "server CPU per request, against plaintext" "$t_cpu" "us" \
				"$p_cpu" noded-plaintext "<= 1.3x plaintext" \
				"$(yes_if "$t_cpu" "$(awk -v p="$p_cpu" 'BEGIN { print p * 1.3 }')" "<")"
		else
			row "$w" "server CPU per request, against plaintext" "$t_cpu" "us" \
				"$p_cpu" noded-plaintext
		fi
		row "$w" "requests/s, against plaintext" "$(jnum "$tj" .rps)" "1/s" \
			"$(jnum "$pj" .rps)" noded-plaintext
		[ "$(jnum "$tj" .errors)" = 0 ] || note "tls ping ${c}x$d had $(jnum "$tj" .errors) errors"
		note "tls ping ${c}x$d: noded $(jnum "$tj" .rps)/s (plaintext $(jnum "$pj" .rps)/s), redis-tls $r_rps/s"
	done

	# Full handshakes (each then a Hello) one after another: server CPU
	# per handshake, and the RSS each idle TLS connection keeps.
	rss0=$(rss_kib "$MASTER_PID")
	t0=$(cpu_ticks "$MASTER_PID")
	tls_idle_open "TLS idle connections" "${tls[@]}"
	t1=$(cpu_ticks "$MASTER_PID")
	sleep 2
	rss1=$(rss_kib "$MASTER_PID")
	secs=$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" 'BEGIN { print t / hz }')
	row "tls handshakes" "full handshakes per second of server CPU" \
		"$(awk -v n="$TLS_IDLE_CONNS" -v s="$secs" 'BEGIN { printf "%.0f", (s > 0 ? n / s : 0) }')" "1/s"
	row "tls idle" "RSS per idle TLS connection" \
		"$(awk -v a="$rss0" -v b="$rss1" -v n="$TLS_IDLE_CONNS" 'BEGIN { printf "%.2f", (b - a) / n }')" "KiB"
	note "tls: $TLS_IDLE_CONNS handshakes took $secs s of server CPU; RSS $rss0 -> $rss1 KiB"
	stop_pid "$ipid"

	# The same resumed (TLS 1.3 tickets; the first one is full).
	t0=$(cpu_ticks "$MASTER_PID")
	tls_idle_open "resumed TLS connections" --resume "${tls[@]}"
	t1=$(cpu_ticks "$MASTER_PID")
	secs=$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" 'BEGIN { print t / hz }')
	row "tls handshakes" "resumed handshakes per second of server CPU" \
		"$(awk -v n="$TLS_IDLE_CONNS" -v s="$secs" 'BEGIN { printf "%.0f", (s > 0 ? n / s : 0) }')" "1/s"
	note "tls: $TLS_IDLE_CONNS resumed handshakes took $secs s of server CPU"
	stop_pid "$ipid"
	stop_pid "$rpid"
	stop_pid "$MASTER_PID"
	stop_pid "$plain_pid"
	tls_fleet "$dir"
}

# hb_window: the master's CPU (% of a core) over HB_SECS while a fleet
# heartbeats, a space, and its RSS (KiB).
hb_window() {
	local t0 t1
	t0=$(cpu_ticks "$MASTER_PID")
	sleep "$HB_SECS"
	t1=$(cpu_ticks "$MASTER_PID")
	echo "$(cpu_pct "$MASTER_PID" $((t1 - t0)) "$HB_SECS") $(rss_kib "$MASTER_PID")"
}

# tls_fleet DIR: TLS_FLEET simulated workers heartbeating in plaintext, then
# over TLS (DIR holds the certificates of bench_tls), each on a new master.
tls_fleet() {
	local dir=$1 p t w="heartbeats $TLS_FLEET workers over TLS"
	start_master
	start_sims "$TLS_FLEET" 1
	sleep 3  # registrations and first reports settle
	p=$(hb_window)
	stop_pid "$SIM_PID"
	stop_pid "$MASTER_PID"
	start_master --tls-cert "$dir/master-m.crt" --tls-key "$dir/master-m.key"
	start_sims "$TLS_FLEET" 1 --tls-ca "$dir/ca/ca.crt"
	sleep 3
	t=$(hb_window)
	stop_pid "$SIM_PID"
	stop_pid "$MASTER_PID"
	row "$w" "master CPU" "${t% *}" "% of a core" "${p% *}" plaintext
	row "$w" "master RSS" "${t#* }" "KiB" "${p#* }" plaintext
	note "tls fleet: $TLS_FLEET workers, master CPU ${t% *}% (plaintext ${p% *}%), RSS ${t#* } KiB (plaintext ${p#* } KiB)"
}

# ---- run ----

note "$(nproc) CPUs, masters on CPU $SERVER_CPU (--shards $SHARDS), load on CPU $CLIENT_CPU; workloads: $ONLY"
REDIS_VERSION=""
if want ping || want idle; then bench_ping; fi
if want idle; then bench_idle; fi
[ -z "${PING_MASTER_PID:-}" ] || { stop_pid "$PING_MASTER_PID"; stop_pid "$REDIS_PID"; }
if want tasks; then bench_tasks; fi
if want fanout || want heartbeats; then bench_fanout; fi
if want queue; then bench_queue; fi
if want durable; then bench_durable; fi
if want failover; then bench_failover; fi
if want restart; then bench_restart; fi
if want tls; then bench_tls; fi

# ---- report ----

ETCD_VERSION=""
if want durable || want failover; then
	ETCD_VERSION=$(etcd --version 2>/dev/null | sed -n 's/^etcd Version: //p')
fi
MACHINE="$(nproc) vCPUs ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), $(awk '/MemTotal/ { printf "%d GiB", $2 / 1048576 }' /proc/meminfo), Linux $(uname -r)"
jq -s --arg date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" --arg machine "$MACHINE" \
	--arg redis "$REDIS_VERSION" --argjson shards "$SHARDS" \
	--argjson duration "$DURATION" --arg etcd "$ETCD_VERSION" \
	--arg fs "$DATA_FS" --arg root "$DATA_ROOT" \
	'{date: $date, machine: $machine, noded_shards: $shards,
	  ping_duration_s: $duration, redis_version: $redis,
	  etcd_version: $etcd,
	  data_filesystem: (if $fs == "" then null else "\($fs) (\($root))" end),
	  results: .}' \
	"$ROWS" >"$OUT"

{
	echo
	echo "$MACHINE; $(date -u +%Y-%m-%d); masters --shards $SHARDS on CPU $SERVER_CPU, load on CPU $CLIENT_CPU${DATA_FS:+; data directories on $DATA_FS ($DATA_ROOT)}${ETCD_VERSION:+; etcd $ETCD_VERSION}"
	echo
	echo "| workload | metric | noded | reference | noded/reference | target | met |"
	echo "|---|---|---:|---:|---:|---|---|"
	jq -r '"| \(.workload) | \(.metric) (\(.unit)) | \(.value) | " +
		(if .reference == null then "" else "\(.reference) (\(.reference_name))" end) +
		" | " + (if .reference == null or .reference == 0 then ""
			else "\(.value / .reference * 100 | round / 100)" end) +
		" | \(.target // "") | " +
		(if .met == null then "" elif .met then "yes" else "**no**" end) + " |"' "$ROWS"
}

if [ -n "$COMPARE" ]; then
	echo
	echo "Change against $COMPARE ($(jq -r .date "$COMPARE")):"
	echo
	echo "| workload | metric | before | now | change |"
	echo "|---|---|---:|---:|---:|"
	jq -r --slurpfile old "$COMPARE" '
		($old[0].results | map({key: "\(.workload)|\(.metric)", value: .value})
		 | from_entries) as $o
		| .results[] | . as $r | $o["\($r.workload)|\($r.metric)"] as $b
		| "| \($r.workload) | \($r.metric) (\($r.unit)) | \($b // "-") | \($r.value) | " +
		  (if $b == null or $b == 0 then "" else
		   "\((($r.value - $b) / $b * 1000 | round) / 10)%" end) + " |"' "$OUT"
fi
note "wrote $OUT"
