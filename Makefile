# noded: one entry point. `make` builds build/noded and build/noded-bench.
#   make deps     install missing Debian packages (scripts/deps.sh)
#   make test     deps, build, run every test, then again under ASan+UBSan
#   make demo     deps, build, start a master on loopback, ping benchmark, stop
#   make bench    optimised build and scripts/bench.sh (noded against redis,
#                 etcd: deps.sh bench installs etcd-server and libgrpc++-dev)
#   make fuzz     libFuzzer targets in tests/fuzz (needs clang; scripts/fuzz.sh)
#   make fuzz-build  only compile and link them (make check does when clang can)
#   make man      the man pages (scdoc) into BUILD/man
#   make install  binaries, man pages, completion, systemd units (PREFIX, DESTDIR)
#   make deb      a Debian package with dpkg-buildpackage, checked by lintian
#   SANITIZER=address,undefined  build with sanitizers (into build-san/)

SANITIZER ?=
# FUZZ=1 (set by fuzz-build): clang, libFuzzer + ASan + UBSan, into build-fuzz/,
# from the same source lists as the daemon, so the targets cannot drift.
FUZZ ?=
FUZZ_CC ?= clang
FUZZ_BUILD := build-fuzz
ifneq ($(FUZZ),)
BUILD := $(FUZZ_BUILD)
CC := $(FUZZ_CC)
OPT := -O1
else ifeq ($(SANITIZER),)
BUILD ?= build
else
BUILD ?= build-san
endif
GEN := $(BUILD)/gen

CC ?= cc
OPT ?= -O2
WARN := -Wall -Wextra -Wshadow -Wformat=2 -Wstrict-prototypes \
	-Wmissing-prototypes -Wno-unused-parameter \
	-Werror=implicit-function-declaration -Werror
CFLAGS += -std=gnu11 -g $(OPT) $(WARN) -D_GNU_SOURCE -MMD -MP \
	-Iinclude -I$(GEN) -Isrc -pthread
LDLIBS := -luring -lprotobuf-c -lhttp_parser -ljansson -lssl -lcrypto -lsystemd \
	-linih -lraft -luv -lpthread -lm

ifneq ($(FUZZ),)
# Coverage instrumentation everywhere; libFuzzer's main only in the targets.
CFLAGS += -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer \
	-fno-sanitize-recover=all -DND_NO_MIMALLOC
LDFLAGS += -fsanitize=fuzzer,address,undefined
else ifeq ($(SANITIZER),)
# mimalloc replaces malloc for the whole process (see README).
LDLIBS += -lmimalloc
else
# The sanitizers bring their own allocator; mimalloc stays out of that build.
CFLAGS += -fsanitize=$(SANITIZER) -fno-omit-frame-pointer \
	-fno-sanitize-recover=all -DND_NO_MIMALLOC
LDFLAGS += -fsanitize=$(SANITIZER)
endif

PROTO_C := $(GEN)/noded.pb-c.c
# The client library brings the one piece of core it uses (buffers).
LIB_SRC := $(wildcard src/wire/*.c) src/client/client.c src/client/client_io.c \
	src/client/client_tls.c src/core/buf.c src/tls/tls.c
# The client protocol on a core connection (client/peer.c) is server side:
# it needs core; only client/client.c and client_io.c are in the library.
SRV_SRC := $(filter-out $(LIB_SRC),$(wildcard src/core/*.c \
	src/exec/*.c src/state/*.c src/raft/*.c src/node/*.c src/api/*.c \
	src/rpc/*.c src/client/*.c src/tls/*.c))
CLI_SRC := $(wildcard src/cli/*.c)
BENCH_SRC := $(wildcard perf/*.c)
# Tests mirror src/: tests/<dir>/test_<name>.c (see README, Layout).
TEST_SRC := $(wildcard tests/*/test_*.c)
TEST_LIB_SRC := $(filter-out tests/test_%,$(wildcard tests/*.c))
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
# The fuzz targets share the in-process shard with the tests.
FUZZ_LIB_SRC := $(filter-out tests/fuzz/fuzz_%,$(wildcard tests/fuzz/*.c)) \
	tests/inproc.c

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))
LIB_OBJ := $(call obj,$(LIB_SRC)) $(BUILD)/obj/gen/noded.pb-c.o
SRV_OBJ := $(call obj,$(SRV_SRC))
CLI_OBJ := $(call obj,$(CLI_SRC))
# noded-bench workers spawns as the exec helpers do (--exec real) and
# reports its machine as the worker does.
BENCH_OBJ := $(call obj,$(BENCH_SRC)) $(BUILD)/obj/src/exec/command.o \
	$(BUILD)/obj/src/exec/command_env.o \
	$(BUILD)/obj/src/node/status.o
TEST_LIB_OBJ := $(call obj,$(TEST_LIB_SRC))
TESTS := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRC))
FUZZ_TARGETS := $(patsubst tests/fuzz/%.c,$(FUZZ_BUILD)/%,$(FUZZ_SRC))
# "y" when FUZZ_CC links a libFuzzer target (clang with compiler-rt).
have_fuzz = $(shell echo 'int LLVMFuzzerTestOneInput(const char *d, long n){return 0;}' | \
	$(FUZZ_CC) -fsanitize=fuzzer -x c - -o /dev/null 2>/dev/null && echo y)

.PHONY: all deps test check check-san demo bench clean install fuzz fuzz-build \
	man check-docs deb
all: $(BUILD)/noded $(BUILD)/noded-bench

deps:
	@scripts/deps.sh

$(GEN)/noded.pb-c.c $(GEN)/noded.pb-c.h &: proto/noded.proto
	@mkdir -p $(GEN)
	protoc-c --proto_path=proto --c_out=$(GEN) $<

$(BUILD)/obj/gen/noded.pb-c.o: $(GEN)/noded.pb-c.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -Wno-missing-prototypes -c -o $@ $<

$(BUILD)/obj/%.o: %.c $(GEN)/noded.pb-c.h
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

# The commit the binaries are built from (noded version, noded_build_info in
# /metrics): "" outside a git checkout; `make ND_GIT_COMMIT=...` sets it.
# $(GEN)/commit.h is rewritten only when it changes, so version.o (which
# includes it) is rebuilt then and nothing relinks otherwise.
ND_GIT_COMMIT ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null)$(shell \
	git rev-parse --git-dir >/dev/null 2>&1 && \
	! git diff --quiet HEAD -- 2>/dev/null && echo -dirty)
$(shell mkdir -p $(GEN) && \
	echo '#define ND_GIT_COMMIT "$(ND_GIT_COMMIT)"' > $(GEN)/commit.h.new && \
	{ cmp -s $(GEN)/commit.h.new $(GEN)/commit.h || \
	  mv $(GEN)/commit.h.new $(GEN)/commit.h; }; rm -f $(GEN)/commit.h.new)

$(BUILD)/libnoded.a: $(LIB_OBJ)
	$(AR) rcs $@ $^

$(BUILD)/noded: $(CLI_OBJ) $(SRV_OBJ) $(BUILD)/libnoded.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/noded-bench: $(BENCH_OBJ) $(BUILD)/libnoded.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lm

# etcd-bench (perf/etcd_bench.cc): the etcd 3.4 reference of bench.sh's
# durable and failover workloads, through its gRPC API. Only when libgrpc++
# is installed (scripts/deps.sh bench), and never part of all or test.
GRPC_PC := $(shell pkg-config --exists grpc++ 2>/dev/null && echo grpc++)
$(BUILD)/etcd-bench: perf/etcd_bench.cc $(BUILD)/obj/perf/hist.o
	@test -n "$(GRPC_PC)" || { echo "etcd-bench needs libgrpc++-dev" \
		"(scripts/deps.sh bench)" >&2; exit 1; }
	$(CXX) -std=c++17 -O2 -g -Wall -Wextra -Werror -Iperf \
		$(shell pkg-config --cflags grpc++ 2>/dev/null) -o $@ $^ \
		$(shell pkg-config --libs grpc++ 2>/dev/null)

# Every test binary routes the project's own allocations through
# tests/alloc_fail.c (off unless a test arms it), so a test can make the Nth
# one fail and reach the out-of-memory branches.
ALLOC_WRAP := -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=strdup,--wrap=strndup
$(BUILD)/obj/tests/%.o: CFLAGS += -Itests
$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(TEST_LIB_OBJ) $(SRV_OBJ) $(BUILD)/libnoded.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $(ALLOC_WRAP) -o $@ $^ -lcriterion $(LDLIBS) -lm

# A libFuzzer target links what a test does: the server objects and the
# client library (only meaningful with FUZZ=1, through fuzz-build).
$(BUILD)/fuzz_%: $(BUILD)/obj/tests/fuzz/fuzz_%.o $(call obj,$(FUZZ_LIB_SRC)) \
		$(SRV_OBJ) $(BUILD)/libnoded.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# Runs every test binary against the daemon built in the same tree.
# Each binary's output is also kept in $(BUILD)/logs; the failures are
# repeated at the end, where a CI log that keeps only its tail still shows them.
# The fuzz targets are built first (plain build only, when clang can), so a
# change that breaks them fails here rather than at the next `make fuzz`.
check: all $(TESTS) check-docs
ifeq ($(SANITIZER),)
	@if [ "$(have_fuzz)" = y ]; then $(MAKE) --no-print-directory fuzz-build; \
	else echo "== fuzz-build skipped: $(FUZZ_CC) cannot link libFuzzer targets"; fi
endif
	@mkdir -p $(BUILD)/logs; failed=; for t in $(TESTS); do \
		echo "== $$t"; log=$(BUILD)/logs/$${t##*/}.log; \
		ND_BIN=$(BUILD)/noded ND_BENCH=$(BUILD)/noded-bench $$t --jobs 1 \
			> $$log 2>&1; rc=$$?; cat $$log; \
		[ $$rc -eq 0 ] || failed="$$failed $$t:$$rc"; \
	done; [ -z "$$failed" ] && exit 0; \
	for f in $$failed; do t=$${f%:*}; echo "== FAILED $$t (exit $${f##*:})"; \
		grep -n -E -A3 'FAIL|CRASH|ERROR: |SUMMARY|runtime error|Assertion|Warning|Synthesis' \
			$(BUILD)/logs/$${t##*/}.log | tail -40; \
	done; exit 1

check-san:
	$(MAKE) SANITIZER=address,undefined check

test: deps
	$(MAKE) check
	$(MAKE) check-san

demo: deps
	$(MAKE) all
	scripts/demo.sh

bench:
	scripts/deps.sh bench
	$(MAKE) all $(BUILD)/etcd-bench
	scripts/bench.sh

# libFuzzer targets (clang): FUZZ_SECONDS per target, default 60.
fuzz:
	scripts/fuzz.sh

fuzz-build:
	@[ "$(have_fuzz)" = y ] || { echo "fuzz-build: $(FUZZ_CC) cannot link libFuzzer" \
		"targets; run: apt-get install -y clang libclang-rt-dev" >&2; exit 1; }
	$(MAKE) FUZZ=1 CC=$(FUZZ_CC) BUILD=$(FUZZ_BUILD) OPT=-O1 $(FUZZ_TARGETS)

# Man pages: doc/man/*.scd, one per command and noded(1), built with scdoc.
MAN_SRC := $(wildcard doc/man/*.scd)
MANS := $(patsubst doc/man/%.scd,$(BUILD)/man/%,$(MAN_SRC))
man: $(MANS)

$(BUILD)/man/%: doc/man/%.scd
	@mkdir -p $(dir $@)
	scdoc < $< > $@

# The man pages and the bash completion against the binary: every command
# has its page, every option of its --help is in it and is completed
# (scripts/check-docs.sh; seconds). Part of `make check`.
check-docs: $(BUILD)/noded $(MANS)
	@scripts/check-docs.sh $(BUILD)

# Where `make install` puts things; DESTDIR is prepended to each. The
# defaults are systemd's own search paths under PREFIX (/usr/local/lib/
# systemd/system is one); the Debian package sets its own (debian/rules).
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
MANDIR ?= $(PREFIX)/share/man
DOCDIR ?= $(PREFIX)/share/doc/noded
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
UNITS := noded-master noded-worker
install: all man
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(INCLUDEDIR)/noded \
		$(DESTDIR)$(LIBDIR) $(DESTDIR)$(MANDIR)/man1 \
		$(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(SYSTEMDUNITDIR) \
		$(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(DOCDIR)/examples
	install -m 755 $(BUILD)/noded $(BUILD)/noded-bench $(DESTDIR)$(BINDIR)/
	install -m 644 include/noded/*.h $(GEN)/noded.pb-c.h $(DESTDIR)$(INCLUDEDIR)/noded/
	install -m 644 $(BUILD)/libnoded.a $(DESTDIR)$(LIBDIR)/
	install -m 644 $(MANS) $(DESTDIR)$(MANDIR)/man1/
	install -m 644 dist/bash-completion/noded $(DESTDIR)$(BASHCOMPDIR)/noded
	for u in $(UNITS); do \
		sed 's|@bindir@|$(BINDIR)|g' dist/systemd/$$u.service.in \
			> $(DESTDIR)$(SYSTEMDUNITDIR)/$$u.service && \
		chmod 644 $(DESTDIR)$(SYSTEMDUNITDIR)/$$u.service || exit 1; \
	done
	install -m 644 dist/sysusers/noded.conf $(DESTDIR)$(SYSUSERSDIR)/noded.conf
	install -m 644 dist/etc/master.env dist/etc/worker.env $(DESTDIR)$(DOCDIR)/examples/

# A Debian package (debian/) built by dpkg-buildpackage from a copy of the
# source in build-deb/ (so its clean step leaves this tree's builds alone),
# then checked by lintian, which must find nothing. Needs the packaging
# tools: scripts/deps.sh deb installs them.
deb:
	@scripts/deps.sh deb
	scripts/deb.sh

clean:
	rm -rf build build-san build-fuzz build-deb

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
