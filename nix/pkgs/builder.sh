# Generic builder of the bundled package set (see default.nix).
#
# It copies files of the host's Debian installation into $out, then makes the
# copy self-contained: every ELF file gets the store path of glibc's dynamic
# loader as its interpreter and the lib directories of its dependencies as its
# RUNPATH, and every script in bin/ gets a store path as its interpreter. Nix
# then finds those store paths in $out and records them as the runtime
# references, exactly as for a package built from source in nixpkgs.
#
# Inputs (environment, set by default.nix):
#   copy      lines "DESTDIR SRC...": each SRC (a glob) is copied, symlinks
#             dereferenced, into $out/DESTDIR; directories recursively.
#             A SRC that matches nothing fails the build.
#   remove    lines of globs relative to $out to delete after copying.
#   links     lines "LINK TARGET": symlinks created in $out.
#   libDirs   colon-separated lib directories of the dependencies.
#   interp    the dynamic loader; empty means $out/lib/ld-linux-x86-64.so.2.
#   shebangs  lines "NAME PATH": interpreter NAME (basename, or the argument
#             of /usr/bin/env) is replaced by PATH. A script in bin/ or
#             libexec/ whose interpreter is not listed fails the build.
#   postInstall  shell commands run after copying, before patching.
#   wrap      lines "PROG VAR=VALUE...": PROG (relative to $out) is moved to
#             .PROG-wrapped and replaced by a script of $shell that exports
#             the variables ($out in a VALUE is expanded) and execs it.
# The script ends with `exit 0` (NixOS/nix#2176).
set -eu
shopt -s nullglob dotglob

mkdir -p "$out"

while read -r dest srcs; do
	[ -n "$dest" ] || continue
	mkdir -p "$out/$dest"
	for pat in $srcs; do
		matches=()
		for m in $pat; do [ -e "$m" ] && matches+=("$m"); done
		if [ ${#matches[@]} -eq 0 ] && [[ $pat == /usr/lib/* ]]; then
			for m in ${pat#/usr}; do [ -e "$m" ] && matches+=("$m"); done # no merged /usr
		fi
		if [ ${#matches[@]} -eq 0 ]; then
			echo "builder: $pat matches nothing on this host; run .ci/setup" >&2
			exit 1
		fi
		for src in "${matches[@]}"; do
			cp -rL --no-preserve=ownership "$src" "$out/$dest/"
		done
	done
done <<<"${copy:-}"

while read -r pat; do
	[ -n "$pat" ] || continue
	rm -rf "$out"/$pat
done <<<"${remove:-}"

while read -r link target; do
	[ -n "$link" ] || continue
	mkdir -p "$(dirname "$out/$link")"
	ln -sfn "$target" "$out/$link"
done <<<"${links:-}"

# postInstall: package-specific shell commands, such as making a script
# call its sibling by store path instead of through PATH.
eval "${postInstall:-}"

rpath=""
if [ -d "$out/lib" ]; then rpath="$out/lib"; fi
if [ -n "${libDirs:-}" ]; then rpath="${rpath:+$rpath:}$libDirs"; fi
loader="${interp:-$out/lib/ld-linux-x86-64.so.2}"

chmod -R u+w "$out"
while IFS= read -r -d '' f; do
	magic=$(head -c 4 "$f" | od -An -tx1 | tr -d ' \n')
	if [ "$magic" != "7f454c46" ]; then
		continue
	fi
	case "$f" in
	*/ld-linux-*.so.*) continue ;; # the loader itself: patchelf would break it
	esac
	if patchelf --print-interpreter "$f" >/dev/null 2>&1; then
		patchelf --set-interpreter "$loader" "$f"
	fi
	if patchelf --print-rpath "$f" >/dev/null 2>&1; then # has a dynamic section
		if [ -n "$rpath" ]; then
			patchelf --set-rpath "$rpath" "$f"
		else
			patchelf --remove-rpath "$f"
		fi
	fi
done < <(find "$out" -type f -print0)

declare -A interpreter
while read -r name path; do
	[ -n "$name" ] || continue
	interpreter[$name]=$path
done <<<"${shebangs:-}"

fix_shebang() {
	local f=$1 line prog arg rest new
	IFS= read -r line <"$f" || true
	[[ $line == '#!'* ]] || return 0
	read -r prog arg rest <<<"${line#\#!}"
	if [ "$(basename "$prog")" = env ]; then
		prog=$arg
		arg=$rest
	elif [ -n "$rest" ]; then
		arg="$arg $rest"
	fi
	new=${interpreter[$(basename "$prog")]:-}
	if [ -z "$new" ]; then
		echo "builder: $f: no store path for interpreter ${line#\#!}" >&2
		exit 1
	fi
	{ printf '#!%s%s\n' "$new" "${arg:+ $arg}"; tail -n +2 "$f"; } >"$f.tmp"
	chmod --reference="$f" "$f.tmp"
	mv "$f.tmp" "$f"
}
for d in "$out/bin" "$out/libexec"; do
	[ -d "$d" ] || continue
	while IFS= read -r -d '' f; do
		fix_shebang "$f"
	done < <(find "$d" -type f -perm -u+x -print0)
done

while read -r prog vars; do
	[ -n "$prog" ] || continue
	wrapped="$(dirname "$out/$prog")/.$(basename "$prog")-wrapped"
	mv "$out/$prog" "$wrapped"
	{
		printf '#!%s\n' "$shell"
		for kv in $vars; do
			v=${kv#*=}
			printf "export %s='%s'\n" "${kv%%=*}" "${v//@out@/$out}"
		done
		printf 'exec -a "$0" %s "$@"\n' "$wrapped"
	} >"$out/$prog"
	chmod 0555 "$out/$prog"
done <<<"${wrap:-}"

exit 0
