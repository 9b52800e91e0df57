#!/bin/sh
# make deb: builds the Debian packages (debian/) with dpkg-buildpackage in
# build-deb/, from a copy of this tree (tracked and new files, not the
# build directories, so the package's clean step leaves them alone), then
# runs lintian on them, which must report nothing (warnings and errors
# fail; informational tags are printed). Prints the .deb files made.
set -eu

for t in dpkg-buildpackage dh lintian fakeroot; do
	command -v "$t" >/dev/null || {
		echo "deb.sh: $t missing: run scripts/deps.sh deb" >&2
		exit 1
	}
done
version=$(dpkg-parsechangelog -S Version)
out=build-deb
src=$out/noded-$version
rm -rf "$out"
mkdir -p "$src"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	git ls-files -z -c -o --exclude-standard |
		tar --null -T - -cf - | tar -xf - -C "$src"
else
	tar --exclude=./build --exclude='./build-*' -cf - . | tar -xf - -C "$src"
fi
(cd "$src" && dpkg-buildpackage -b -us -uc -j"$(nproc)")
changes=$(ls "$out"/noded_"$version"_*.changes)
lintian --info --display-info --fail-on error,warning "$changes"
echo "deb.sh: lintian found nothing to fix in:"
ls -1 "$out"/*.deb
