#!/bin/sh
# Installs the Debian packages noded needs to build, test and benchmark,
# only those that are missing. Safe to run again. Exits non-zero, saying what
# to run, when it cannot install (not root and no sudo, apt failing).
set -eu

# build: liburing-dev protobuf-c mimalloc; tests: criterion; benchmark
# reference: redis-server/redis-tools; pkg-config finds the libraries;
# fuzz targets: clang and its compiler-rt (libFuzzer, sanitizers);
# systemd units: libsystemd-dev (sd_notify); man pages: scdoc; the config
# files: libinih-dev.
PKGS="build-essential pkg-config liburing-dev libprotobuf-c-dev protobuf-c-compiler
libmimalloc-dev libcriterion-dev libjansson-dev libhttp-parser-dev libssl-dev
libsystemd-dev scdoc libinih-dev
redis-server redis-tools wrk curl jq procps clang libclang-rt-dev"
# `scripts/deps.sh deb` (make deb): the Debian packaging tools as well.
if [ "${1:-}" = deb ]; then
	PKGS="$PKGS dpkg-dev debhelper fakeroot lintian"
fi

missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0

echo "deps.sh: installing:$missing" >&2
if [ "$(id -u)" = 0 ]; then
	SUDO=""
elif command -v sudo >/dev/null 2>&1; then
	SUDO="sudo"
else
	echo "deps.sh: not root and no sudo; run as root: apt-get update && apt-get install -y$missing" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
if ! { $SUDO apt-get update -q && $SUDO apt-get install -y -q --no-install-recommends $missing; }; then
	echo "deps.sh: apt-get failed; run: ${SUDO:+sudo }apt-get update && ${SUDO:+sudo }apt-get install -y$missing" >&2
	exit 1
fi
