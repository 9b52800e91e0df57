#!/usr/bin/env bash
# Demo (run by `make demo`, which builds first): starts `noded dev` (a master
# and two workers in one process) on an ephemeral loopback port, runs sample
# tasks through the CLI (one on each worker, a fan-out to all, one that
# fails), lists them, runs a short pipelined Ping benchmark, then stops it
# with SIGTERM and checks that it exited 0.
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

"$NODED" dev --listen 127.0.0.1:0 --workers 2 >"$TMP/out" 2>"$TMP/err" &
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
	die "noded dev did not print its address"
fi
echo "demo: noded dev (pid $PID): master on $ADDR with workers dev-1, dev-2"

# Wait for both workers to register (bounded).
for _ in $(seq 50); do
	[ "$("$NODED" nodes --master "$ADDR" 2>/dev/null | grep -c ALIVE)" = 2 ] &&
		break
	sleep 0.1
done
show() { # a command line, then its output and exit status
	echo
	printf '$ noded'; printf ' %q' "$@"; echo
	st=0
	"$NODED" "$@" || st=$?
	echo "(exit status $st)"
}
show nodes --master "$ADDR"
show run --master "$ADDR" --node dev-1 -- uname -sr
show run --master "$ADDR" --node dev-2 --shell -- 'echo "hello from $(hostname), pid $$"'
show run --master "$ADDR" --all -- sh -c 'echo up $(cut -d" " -f1 /proc/uptime)s'
show run --master "$ADDR" -- sh -c 'echo about to fail >&2; exit 3'
show tasks --master "$ADDR"
echo

echo "demo: $BENCH ping --addr $ADDR --conns 4 --depth 8 --duration 3"
rc=0
timeout 30 "$BENCH" ping --addr "$ADDR" --conns 4 --depth 8 --duration 3 ||
	rc=$?

echo "demo: stopping noded dev (SIGTERM)"
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
	die "noded dev did not exit within 10 s of SIGTERM"
fi
PID=""
[ "$status" = 0 ] || { cat "$TMP/err" >&2; die "noded dev exited with status $status"; }
[ "$rc" = 0 ] || die "the benchmark failed (exit $rc)"
echo "demo: noded dev exited 0; done"
