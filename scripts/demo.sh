#!/usr/bin/env bash
# Demo (run by `make demo`, which builds first): starts a master on an
# ephemeral loopback port, runs a short pipelined Ping benchmark against it,
# stops the master with SIGTERM and checks that it exited 0.
set -euo pipefail

cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
NODED="$BUILD/noded"
BENCH="$BUILD/noded-bench"

die() { echo "demo.sh: $*" >&2; exit 1; }

[ -x "$NODED" ] && [ -x "$BENCH" ] || die "build first: make all"

TMP=$(mktemp -d /tmp/noded-demo.XXXXXX)
PID=""

cleanup() {
	if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
		kill -KILL "$PID" 2>/dev/null || true
		wait "$PID" 2>/dev/null || true
	fi
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$NODED" master --listen 127.0.0.1:0 >"$TMP/out" 2>"$TMP/err" &
PID=$!

ADDR=""
for _ in $(seq 100); do  # up to 10 s
	ADDR=$(sed -n 's/^listening on //p' "$TMP/out" | head -n1)
	[ -n "$ADDR" ] && break
	kill -0 "$PID" 2>/dev/null || break
	sleep 0.1
done
if [ -z "$ADDR" ]; then
	cat "$TMP/err" >&2
	die "the master did not print its address"
fi
echo "demo: master pid $PID listening on $ADDR"

echo "demo: $BENCH ping --addr $ADDR --conns 4 --depth 8 --duration 3"
rc=0
timeout 30 "$BENCH" ping --addr "$ADDR" --conns 4 --depth 8 --duration 3 ||
	rc=$?

echo "demo: stopping the master (SIGTERM)"
kill -TERM "$PID"
status=""
for _ in $(seq 100); do  # up to 10 s to drain and exit
	if ! kill -0 "$PID" 2>/dev/null; then
		status=0
		wait "$PID" || status=$?
		break
	fi
	sleep 0.1
done
if [ -z "$status" ]; then
	cat "$TMP/err" >&2
	die "the master did not exit within 10 s of SIGTERM"
fi
PID=""
[ "$status" = 0 ] || { cat "$TMP/err" >&2; die "the master exited with status $status"; }
[ "$rc" = 0 ] || die "the benchmark failed (exit $rc)"
echo "demo: master exited 0; done"
