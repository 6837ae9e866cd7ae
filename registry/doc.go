// Package registry implements the pull side of the OCI distribution API as an
// [http.Handler] that builds images from Nix on demand. Other Go servers can
// mount it:
//
//	reg, err := registry.New(registry.Config{Realiser: ..., Store: ..., Layers: ..., Group: ...})
//	mux.Handle("/v2/", reg)
//
// # Routes
//
// Paths are parsed from their end, because a repository name contains
// slashes (net/http's ServeMux cannot route /v2/{name...}/blobs/{digest}):
//
//	GET  /v2/                          200 {} with Docker-Distribution-API-Version: registry/2.0
//	GET  /v2/<name>/manifests/<tag>    build (or find) the image, answer its manifest
//	GET  /v2/<name>/manifests/<digest> a manifest built before, by digest
//	GET  /v2/<name>/blobs/<digest>     a layer or config, with Range support
//	GET  /v2/<name>/tags/list          {"name":<name>,"tags":["latest"]}
//
// HEAD works wherever GET does and sends the same headers (Content-Type,
// Content-Length, Docker-Content-Digest) without a body; a HEAD for a cached
// manifest never rebuilds it. Every other method is refused with 405
// UNSUPPORTED: images are built, not pushed, and never deleted. Paths outside
// these routes get 404 NOT_FOUND.
//
// The tag list names "latest" for every well-formed name without running Nix
// (existence is checked when the manifest is asked for); git package sources
// also accept refs and commits as tags, which cannot be listed. Sources with
// a single version are wrapped in [LatestOnly], so that any other tag is
// MANIFEST_UNKNOWN.
//
// # Image names
//
// Each component of the name is a top-level (or dotted) attribute of the
// package set: "shell/curl" asks for bashInteractive, coreutils, moreutils,
// nano (the "shell" meta-package, which also sets Cmd ["bash"]) and curl;
// cacert and iana-etc are always added; the list is sorted and
// de-duplicated, so "curl/shell" is the same image. The meta-package "arm64"
// builds for aarch64-linux. See [ParseName] for the grammar and limits.
//
// # Building
//
// A manifest request by tag asks the [Source] for a cache key. When the key
// is pinned (a commit, the bundled package set), the image key
// sha256(format version, source key, system, Cmd, packages) is looked up in
// the index, and a hit is served from memory. Otherwise the image is built:
//
//  1. the [Realiser] (package nix) realises the packages and returns their
//     runtime closure graph; at most Config.MaxBuilds run at once;
//  2. the [GroupFunc] (package layers) splits the graph into at most
//     MaxLayers-1 groups, most shared first;
//  3. the [LayerBuilder] turns each group into a gzip layer blob, which it
//     caches by content, so images that share store paths share layers;
//  4. the customisation layer, a symlink forest of the requested packages
//     with /etc/passwd, /etc/group, /tmp and /usr/bin/env, goes last;
//  5. the config and the two manifests (Docker v2 schema 2 and OCI, same
//     config bytes, same layer blobs, different media types) are stored as
//     blobs, so a manifest fetched by tag can be fetched later by digest,
//     and a record of the image is written to Config.StateDir so that the
//     cache survives a restart.
//
// Concurrent requests for the same image share one build, and each layer is
// built once even when several images need it at the same time. A client
// that hangs up stops waiting; the build goes on for the others.
//
// For example, the first GET of /v2/shell/curl/manifests/latest on the
// bundled package set runs Nix once for bashInteractive, cacert, coreutils,
// curl, iana-etc, moreutils and nano, builds every layer, and answers a
// Docker manifest; the second GET (or a HEAD, or the same name with an OCI
// Accept header) is answered from memory, and a GET of shell/git builds
// only the layers holding git and the paths no earlier image had.
//
// # Errors
//
// Errors are the specification's JSON body,
// {"errors":[{"code":...,"message":...,"detail":...}]}, with the status
// declared for each code in one place (see [ErrorCode]):
//
//	NAME_INVALID      400  malformed or hostile names; they never reach Nix
//	MANIFEST_UNKNOWN  404  unknown packages (the message lists all of them), a
//	                       system the source cannot build for, a malformed tag,
//	                       a digest never served
//	BLOB_UNKNOWN      404  a blob not in the store
//	DIGEST_INVALID    400  anything but sha256 and 64 lower-case hex digits
//	UNSUPPORTED       405  pushes, deletes, other methods
//	NOT_FOUND         404  paths outside the API
//	UNKNOWN           500  a failed Nix build: a short message for the client,
//	                       the full Nix output in the server log
//	UNAVAILABLE       503  a Nix build that ran out of time (NIX_TIMEOUT)
//
// # Logs
//
// The handler logs through log/slog, one line per request, formatted by a
// goroutine of its own after the response has been sent:
//
//	level=INFO msg=request method=GET path=/v2/shell/manifests/latest status=200 bytes=1234 duration=85µs
//
// one per build (layer_cache_hits counts layers this process had built
// before; the layer assembler logs a "layer built" line for each layer it
// actually builds):
//
//	level=INFO msg=build image=shell tag=latest packages="[bashInteractive ...]" system=x86_64-linux paths=24
//	    layers=12 layer_cache_hits=3 bytes=31457280 nix_duration=2.1s duration=3.4s docker_digest=sha256:... oci_digest=sha256:...
//
// and, for a failed build, "build failed" with the error and, when Nix
// failed, "nix log" with Nix's output. A cached manifest costs one map
// lookup, no allocation and a channel send for its log line; to keep the
// log's write system calls off the request path too, write the log through
// a [LogBuffer].
package registry
