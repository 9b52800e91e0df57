#!/bin/bash
# Checks the man pages and the bash completion against the binary (run by
# `make check`, a few seconds): every command `noded help` lists has its
# page (noded-CMD.1, built) and is named in noded(1); every option its
# --help shows has its entry in its page's OPTIONS (a line starting
# *--option*); the completion offers every command and, for each, every
# option of its --help; the built pages format without groff warnings; the
# systemd units load (systemd-analyze verify).
# Usage: scripts/check-docs.sh BUILD_DIR (holding noded and man/).
set -u
build=${1:-build}
bin=$build/noded
man=$build/man
src=doc/man
fails=0

fail()
{
	echo "check-docs: $*" >&2
	fails=$((fails + 1))
}

[ -x "$bin" ] || { echo "check-docs: no $bin" >&2; exit 1; }
commands=$("$bin" help | sed -n '/^commands:/,$s/^  \([a-z][a-z-]*\).*/\1/p')
[ -n "$commands" ] || { echo "check-docs: '$bin help' lists no command" >&2; exit 1; }

[ -s "$man/noded.1" ] || fail "$man/noded.1 was not built"
for c in $commands; do
	grep -q -- "^\*$c\*" "$src/noded.1.scd" ||
		fail "$src/noded.1.scd: command '$c' is not listed under COMMANDS"
	case $c in version | help) continue ;; esac
	page=$src/noded-$c.1.scd
	if [ ! -f "$page" ]; then
		fail "no man page for 'noded $c': write $page"
		continue
	fi
	[ -s "$man/noded-$c.1" ] || fail "$man/noded-$c.1 was not built"
	grep -qF "*noded-$c*(1)" "$src/noded.1.scd" ||
		fail "$src/noded.1.scd does not refer to noded-$c(1)"
	for o in $("$bin" "$c" --help 2>&1 | grep -o -- '--[a-z][a-z0-9-]*' | sort -u); do
		grep -q -e "^\*$o\*" -e "^\*--.*, \*$o\*" -- "$page" ||
			fail "$page: option $o of 'noded $c --help' is not described"
	done
done

if command -v groff >/dev/null; then
	for f in "$man"/*.1; do
		w=$(groff -man -ww -z "$f" 2>&1)
		[ -z "$w" ] || fail "$f: groff: $w"
	done
fi

# The systemd units, as systemd would load them (with this binary and
# these man pages, which their Documentation= names).
if command -v systemd-analyze >/dev/null; then
	t=$(mktemp -d)
	mkdir "$t/man1"
	cp "$man"/*.1 "$t/man1/"
	for u in dist/systemd/*.service.in; do
		sed "s|@bindir@|$(cd "$build" && pwd)|g" "$u" >"$t/$(basename "$u" .in)"
	done
	# Documentation= is checked with man(1), where there is one (a fresh
	# machine may have systemd but no man-db)
	mancheck=yes
	command -v man >/dev/null || mancheck=no
	w=$(cd "$t" && MANPATH=$t systemd-analyze verify --man="$mancheck" \
		./*.service 2>&1) ||
		fail "systemd-analyze verify: $w"
	[ -z "$w" ] || fail "systemd-analyze verify: $w"
	rm -rf "$t"
else
	echo "check-docs: systemd-analyze missing: units not verified"
fi

# The completion, as bash runs it on TAB.
comp=dist/bash-completion/noded
complete_words()
{
	bash -c 'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1))
		_noded; printf "%s\n" "${COMPREPLY[@]}"' _ "$comp" "$@"
}
got=$(complete_words "$bin" "")
for c in $commands; do
	grep -qx -- "$c" <<<"$got" || fail "$comp: 'noded <TAB>' does not offer '$c'"
done
for c in $commands; do
	case $c in version | help) continue ;; esac
	got=$(complete_words "$bin" "$c" --)
	for o in $("$bin" "$c" --help 2>&1 | grep -o -- '--[a-z][a-z0-9-]*' | sort -u) --help; do
		grep -qx -- "$o" <<<"$got" ||
			fail "$comp: 'noded $c --<TAB>' does not offer $o"
	done
done

if [ "$fails" -gt 0 ]; then
	echo "check-docs: $fails problem(s)" >&2
	exit 1
fi
n=$(echo $commands | wc -w)
echo "check-docs: $n commands: man pages and completion list every option"
