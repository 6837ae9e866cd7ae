// Package nix realises packages of a nixpkgs-shaped package set with Nix and
// reports their runtime closure as a [closure.Graph].
//
// Nix is used only to evaluate, build and query store paths; everything
// after that (layers, tarballs, manifests) happens in Go elsewhere.
//
// # Sources
//
// A [Source] says where the package set comes from and gives a cache key
// per image tag that is "pinned" only when the tag always denotes the same
// set:
//
//	source            configured by        tags                 pinned
//	[PathSource]      NIXERY_PKGS_PATH     latest               never
//	[ChannelSource]   NIXERY_CHANNEL       latest               a 40-hex commit or URL carrying one
//	[GitSource]       NIXERY_PKGS_REPO     branch or commit     a 40-hex commit tag
//	[BundledSource]   (the default)        latest               always (key = hash of its files)
//
// A source with one version answers any other tag with [ErrUnknownTag], so
// that no caller has to remember which sources have tags. [NewSource] picks
// one from a [SourceConfig]; [SourceFromEnv] from the environment.
//
// # Popularity
//
// [Builder.Popularity] gives the package set's popularity, which weighs
// how store paths are grouped into layers: from a file or URL in upstream
// Nixery's format, or, for a source that can list its packages (the bundled
// set), computed from the set itself and kept on disk with a checksum.
// Its fingerprint names it in image keys.
//
// # Errors
//
// Errors say what kind of failure they are by the standard error they match
// (fs.ErrNotExist for unknown packages and tags, fs.ErrInvalid for bad
// names, errors.ErrUnsupported for systems, context.DeadlineExceeded for
// timeouts), so that callers classify them without knowing this package. The bundled set lives in
// nix/pkgs (embedded with go:embed): about 65 packages copied from the
// host's Debian 12 binaries, with their ELF interpreter and RUNPATH
// rewritten to point at each other's store paths. For aarch64-linux the
// same packages are copied from Debian 12's arm64 packages, which
// .ci/setup-arm64 unpacks under NIXERY_DEBIAN_ARM64_ROOT: aarch64-linux
// derivations whose builder runs on the host (BundledNixConfig lets Nix
// build them there), so nothing is emulated while building. It exists for
// offline use and tests; point the server at real nixpkgs for real images.
//
// # Building
//
// [Builder.Build] turns a [Request] into a [Result] in four steps:
//
//  1. Every name is checked with [ValidateName] and the system against
//     [Systems] (and the source's own list) before any Nix process starts.
//     A bad name is an [*InvalidNameError], a bad system an
//     [*UnsupportedSystemError].
//  2. nix-instantiate --eval --strict --json --read-write-mode evaluates
//     resolve.nix (embedded) with the whole request as one JSON string
//     passed by --argstr. Names are data there, looked up as dynamic
//     attribute names (set ? ${name}), never spliced into Nix source. Unknown names come
//     back together and become one [*UnknownPackagesError].
//  3. nix-store --realise builds the derivations.
//  4. nix path-info --json --recursive lists the closure; its output (the
//     array of Nix 2.8 or the object of later versions) is parsed by
//     [closure.ParsePathInfo] and becomes the result's graph, whose roots
//     are the requested outputs.
//
// At most [Options.MaxConcurrent] Builds run Nix at once, and at most
// [Options.MaxQueue] wait for a slot; a Build that finds the queue full
// returns a [*BusyError] at once, whose RetryAfter estimates when the
// queue will have had its turn. [Request].Started tells the caller when a
// Build leaves the queue, so that it can cancel a Build nobody waits for
// while that costs nothing. Nix runs 10 nice levels below the caller.
//
// All of it, the wait for a slot included, is bounded by
// [Options.Timeout]: when it expires the Nix
// process group gets SIGTERM (Nix then kills its builders, which run in
// sessions of their own), then SIGKILL, and Build returns an error wrapping
// [ErrTimeout]. A branch or commit that a git source does not have is an
// error wrapping [ErrUnknownTag] that names it. Other failures are a
// [*BuildError] carrying the tail of Nix's standard error (its last 25
// lines, at most 4 KB, logged once when the command fails), or
// [ErrNixNotFound].
//
// # Name resolution
//
// As in upstream Nixery, for each dot-separated component of a name:
// the attribute as spelt; else, for a component starting with a digit, the
// attribute with a "_" prefix; else the attribute that matches
// case-insensitively (Docker lower-cases image names). For the bundled set:
//
//	requested               resolves to
//	curl                    curl
//	bashinteractive         bashInteractive
//	gitandtools.git         gitAndTools.git
//	python3packages.six     python3Packages.six
//	doesnotexist            (unknown)
//	python3Packages         (unknown: not a derivation)
//
// # Example
//
// Building curl and bashInteractive from the bundled set gives a graph
// of 26 store paths: curl-7.88.1 with glibc and the 22 other libraries it needs
// (libcurl's friends openssl, nghttp2, krb5, openldap, gnutls, ...), and
// bash-interactive-5.2.15 with ncurses and the same glibc-2.36, which both
// closures share:
//
//	src, _ := nix.NewBundledSource("")
//	b := nix.NewBuilder(src, nix.Options{})
//	res, err := b.Build(ctx, nix.Request{Packages: []string{"curl", "bashinteractive"}})
//	// res.Packages[1] = {Name: "bashinteractive", Attr: "bashInteractive", Path: "/nix/store/…-bash-interactive-5.2.15"}
//	// res.Graph.Roots() = the two outputs
package nix
