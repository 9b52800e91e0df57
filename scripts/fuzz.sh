#!/bin/sh
# Builds the libFuzzer targets in tests/fuzz/ with clang (ASan + UBSan) and
# runs each for FUZZ_SECONDS (default 60), starting from the seed corpus in
# tests/fuzz/corpus/NAME. New inputs go to build-fuzz/corpus/NAME; a crash
# leaves its input in build-fuzz/ and makes this script fail.
#   FUZZ_SECONDS=600 scripts/fuzz.sh          all targets
#   scripts/fuzz.sh server                     one target
set -eu
cd "$(dirname "$0")/.."

SECS=${FUZZ_SECONDS:-60}
OUT=build-fuzz
CC=${FUZZ_CC:-clang}

if ! command -v "$CC" >/dev/null 2>&1 ||
   ! echo 'int LLVMFuzzerTestOneInput(const char *d, long n){return 0;}' |
	"$CC" -fsanitize=fuzzer -x c - -o /dev/null 2>/dev/null; then
	echo "fuzz.sh: needs clang with libFuzzer; run: apt-get install -y clang libclang-rt-14-dev" >&2
	exit 1
fi

make build/gen/noded.pb-c.c >/dev/null
mkdir -p "$OUT"
FLAGS="-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
 -D_GNU_SOURCE -DND_NO_MIMALLOC -Iinclude -Ibuild/gen -Isrc"
LIBS="-luring -lprotobuf-c -lpthread"
COMMON="src/wire/arena.c src/wire/errors.c src/wire/frame.c build/gen/noded.pb-c.c"
SERVER="src/core/conn.c src/core/shard.c src/core/server.c src/node/service.c src/rpc/server.c
 src/rpc/hello.c src/rpc/ping.c src/rpc/report_status.c src/rpc/assign_task.c"

build() { # name sources...
	name=$1
	shift
	# shellcheck disable=SC2086
	"$CC" $FLAGS -o "$OUT/fuzz_$name" "tests/fuzz/fuzz_$name.c" "$@" $COMMON $LIBS
}
build server $SERVER
build client src/rpc/client.c

targets=${*:-"server client"}
for t in $targets; do
	mkdir -p "$OUT/corpus/$t"
	echo "fuzz.sh: $t for ${SECS}s" >&2
	(cd "$OUT" && "./fuzz_$t" -max_total_time="$SECS" -max_len=65536 \
		-print_final_stats=1 "corpus/$t" "../tests/fuzz/corpus/$t")
done
