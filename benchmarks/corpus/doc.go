// Package corpus turns the Debian packages installed on a machine into a
// large, real Nix package set for the benchmark harness: one store path per
// Debian package, holding the package's real files, with runtime references
// to the store paths of its dependencies.
//
// # From dpkg to Nix
//
// [ReadDatabase] reads /var/lib/dpkg/status (installed packages, their
// Installed-Size, Pre-Depends, Depends and Provides) and each package's file
// list from /var/lib/dpkg/info/<name>.list. [Resolve] turns each dependency
// group into one installed package: the first alternative installed under its
// own name, else the first alternative some installed package provides (the
// provider that sorts first). Dependencies on packages that are not installed
// are ignored. Debian has dependency cycles and Nix forbids them, so Resolve
// drops the back edges of a depth-first search in name order.
//
// [Build] then writes a Nix package set into a work directory:
//
//	default.nix      { system ? builtins.currentSystem, ... }: { "<attr>" = ...; }
//	mk.nix           the derivation builder shared by every package
//	builder.sh       the builder script (bash, absolute paths, exit 0)
//	files/<attr>.list  the package's files, relative to the root
//	all.nix          builds everything; its output maps attributes to store paths
//	result           GC root (symlink to all.nix's output)
//
// Each package is a plain derivation with builder /bin/bash that copies the
// files of its list (regular files and symlinks; directories created;
// unreadable files skipped) from the host into $out with GNU tar, and writes
// the store paths of its dependencies to $out/nix-support/propagated-deps.
// Nix's reference scanner finds those paths, so `nix path-info --recursive`
// reports exactly the resolved Debian dependency graph, with real NAR sizes.
//
// Attribute names are Debian names with '.' mapped to '_' and '+' to 'P'
// ([AttrName]); store path names are "<name>-<version>". The set also holds
// [AttrCacert] and [AttrIanaEtc], which nixery always adds to an image, and
// the aliases of [ShellAliases] (bashInteractive -> bash, ...) used by
// nixery's `shell` meta-package, so the work directory serves as
// NIXERY_PKGS_PATH for `nixery serve`.
//
// # Worked example
//
// With these installed packages (see testdata/dpkg):
//
//	libc6      Depends: libgcc-s1          (cycle: libgcc-s1 depends on libc6)
//	libgcc-s1  Depends: libc6
//	bash       Pre-Depends: libc6; Depends: base-files | hypothetical
//	mawk       Provides: awk
//	tool       Depends: awk, missing-pkg
//
// Resolve gives bash -> base-files, libc6; tool -> mawk (through Provides;
// missing-pkg is ignored); and of the cycle, the search starting from the
// name that sorts first keeps the edge it walks first: from libc6 it follows
// libc6 -> libgcc-s1, finds libgcc-s1 -> libc6 pointing back at the search
// stack and drops it. The store path of libc6 then refers to libgcc-s1's, and
// bash's refers to both base-files' and libc6's.
//
// # Modes
//
// The full corpus is every installed package (on the project's CI machine:
// about 740 store paths, 4.3 GB). The quick corpus is the closure of
// [QuickRoots] bounded by [QuickMaxPackages]; it builds in seconds. The
// graph, popularity and package map of a corpus cover exactly the packages
// built, so a quick corpus is self-contained.
package corpus
