#!/bin/sh
# Builds the libFuzzer targets in tests/fuzz/ (make fuzz-build: clang, ASan +
# UBSan, from the Makefile's own source lists) and runs each for FUZZ_SECONDS
# (default 60), starting from the seed corpus in tests/fuzz/corpus/NAME. New
# inputs go to build-fuzz/corpus/NAME; a crash leaves its input in build-fuzz/
# (crash-*, leak-*, timeout-*). Every target runs; the script fails at the end
# when any of them found something.
#   FUZZ_SECONDS=600 scripts/fuzz.sh          all targets
#   scripts/fuzz.sh server http                some of them
set -eu
cd "$(dirname "$0")/.."

SECS=${FUZZ_SECONDS:-60}
OUT=build-fuzz

make --no-print-directory fuzz-build >/dev/null

if [ $# -eq 0 ]; then
	for f in tests/fuzz/fuzz_*.c; do
		t=${f#tests/fuzz/fuzz_}
		set -- "$@" "${t%.c}"
	done
fi

failed=""
for t in "$@"; do
	if [ ! -x "$OUT/fuzz_$t" ]; then
		echo "fuzz.sh: no target $t (tests/fuzz/fuzz_$t.c)" >&2
		exit 2
	fi
	mkdir -p "$OUT/corpus/$t" "tests/fuzz/corpus/$t"
	echo "fuzz.sh: $t for ${SECS}s (log: $OUT/fuzz_$t.log)" >&2
	rc=0
	(cd "$OUT" && "./fuzz_$t" -max_total_time="$SECS" -max_len=65536 \
		-print_final_stats=1 "corpus/$t" "../tests/fuzz/corpus/$t") \
		>"$OUT/fuzz_$t.log" 2>&1 || rc=$?
	grep -E '^stat::(number_of_executed_units|peak_rss_mb)|^Done ' \
		"$OUT/fuzz_$t.log" >&2 || true
	if [ $rc -ne 0 ]; then
		grep -E -A12 '^==[0-9]+==ERROR|runtime error|^SUMMARY|Test unit written' \
			"$OUT/fuzz_$t.log" | head -40 >&2
		failed="$failed $t"
	fi
done
if [ -n "$failed" ]; then
	echo "fuzz.sh: FAILED:$failed (inputs in $OUT/, logs $OUT/fuzz_NAME.log)" >&2
	exit 1
fi
echo "fuzz.sh: no crash in:" "$@" >&2
