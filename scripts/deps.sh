#!/bin/sh
# Installs the Debian packages noded needs to build, test and benchmark,
# only those that are missing. Safe to run again. Exits non-zero, saying what
# to run, when it cannot install (not root and no sudo, apt failing).
set -eu

# build: liburing-dev protobuf-c mimalloc; tests: criterion; benchmark
# reference: redis-server/redis-tools; pkg-config finds the libraries;
# fuzz targets: clang and its compiler-rt (libFuzzer, sanitizers);
# systemd units: libsystemd-dev (sd_notify); man pages: scdoc; the config
# files: libinih-dev; replication: libraft-dev (0.22, see below) and libuv1-dev;
# the partition test's network namespaces: iproute2.
PKGS="build-essential pkg-config liburing-dev libprotobuf-c-dev protobuf-c-compiler
libmimalloc-dev libcriterion-dev libjansson-dev libhttp-parser-dev libssl-dev
libsystemd-dev scdoc libinih-dev libuv1-dev iproute2
redis-server redis-tools wrk curl jq procps clang libclang-rt-dev"
# `scripts/deps.sh deb` (make deb): the Debian packaging tools as well.
if [ "${1:-}" = deb ]; then
	PKGS="$PKGS dpkg-dev debhelper fakeroot lintian"
fi
# `scripts/deps.sh bench` (make bench): the references of the durable and
# failover workloads of scripts/bench.sh, for benchmarking only (nothing
# builds or tests against them): etcd 3.4 (etcd-server) and libgrpc++-dev
# for its load client, build/etcd-bench (perf/etcd_bench.cc).
if [ "${1:-}" = bench ]; then
	PKGS="$PKGS etcd-server libgrpc++-dev"
fi

# libraft 0.22 or later: bookworm's own 0.15.0 commits entries of earlier
# terms by counting replicas (canonical/raft #220) and lacks crash fixes. On
# bookworm it comes from bookworm-backports, which is enabled (when no apt
# source names it yet) and pinned for libraft only; elsewhere from the
# release itself.
raft_ok() {
	v=$(dpkg-query -W -f='${Version}' libraft-dev 2>/dev/null) &&
		dpkg --compare-versions "$v" ge 0.22
}

missing=""
raft_missing=""
raft_ok || raft_missing="libraft-dev"
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done
[ -z "$missing$raft_missing" ] && exit 0

echo "deps.sh: installing:$missing $raft_missing" >&2
if [ "$(id -u)" = 0 ]; then
	SUDO=""
elif command -v sudo >/dev/null 2>&1; then
	SUDO="sudo"
else
	echo "deps.sh: not root and no sudo; run as root: apt-get update && apt-get install -y$missing" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
codename=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")
if [ -n "$raft_missing" ] && [ "$codename" = bookworm ]; then
	if ! grep -rqs "bookworm-backports" /etc/apt/sources.list \
		/etc/apt/sources.list.d/; then
		printf '%s\n' "Types: deb" "URIs: http://deb.debian.org/debian" \
			"Suites: bookworm-backports" "Components: main" \
			"Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" |
			$SUDO tee /etc/apt/sources.list.d/noded-backports.sources >/dev/null
	fi
	printf '%s\n' "Package: libraft-dev libraft0" \
		"Pin: release n=bookworm-backports" "Pin-Priority: 990" |
		$SUDO tee /etc/apt/preferences.d/noded-libraft >/dev/null
fi
if ! { $SUDO apt-get update -q && $SUDO apt-get install -y -q --no-install-recommends $missing $raft_missing; }; then
	echo "deps.sh: apt-get failed; run: ${SUDO:+sudo }apt-get update && ${SUDO:+sudo }apt-get install -y$missing $raft_missing" >&2
	exit 1
fi
if ! raft_ok; then
	echo "deps.sh: libraft-dev 0.22 or later is needed (found" \
		"$(dpkg-query -W -f='${Version}' libraft-dev 2>/dev/null || echo none));" \
		"on Debian 12 it is in bookworm-backports" >&2
	exit 1
fi
