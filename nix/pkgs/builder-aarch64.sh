# Builder of the bundled package set for aarch64-linux (see default.nix):
# runs builder.sh (its first argument) on the host, on the files of Debian
# 12's arm64 packages that .ci/setup-arm64 unpacked under $srcRoot.
#
# Inputs, on top of builder.sh's:
#   srcRoot     prefixed to every source path of copy (empty: the host's
#               own files, for data such as the CA bundle);
#   loaderName  the dynamic loader's file name, ld-linux-aarch64.so.1: glibc
#               itself (interp empty) points its programs at its own.
# Only the host's bash, coreutils and patchelf run: patchelf edits arm64
# ELF files as it does x86_64 ones, so nothing is emulated while building.
set -eu

if [ -n "${srcRoot:-}" ]; then
	prefixed=""
	set -f # the sources are globs for builder.sh, not for this loop
	while read -r dest srcs; do
		[ -n "$dest" ] || continue
		line=$dest
		for s in $srcs; do line="$line $srcRoot$s"; done
		prefixed="$prefixed$line"$'\n'
	done <<<"${copy:-}"
	set +f
	copy=$prefixed
fi
if [ -z "${interp:-}" ]; then
	interp=$out/lib/$loaderName
fi

. "$1"
