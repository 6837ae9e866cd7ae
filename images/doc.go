// Package images turns image names into container images. It owns what an
// image is made of and the one cache of images built: [ParseName] reads a
// name ("shell/curl") into packages, [Builder] realises them with Nix
// (package nix), groups their closure into layers and builds them (package
// layers), adds the customisation layer, writes the config and the
// manifests to the blob store, and keeps every image in its index. The
// registry (package registry) serves what a Builder makes; any Go program
// can ask a Builder for an [Image] and turn it into a go-containerregistry
// v1.Image with [Image.V1].
//
// # Names
//
// Each component of a name is an attribute path of the package set
// ("curl", "python3Packages.six"), checked by package nix's one name
// validator, or a meta-package: "shell" adds [ShellPackages] (bash,
// coreutils, moreutils, nano) and sets Cmd ["bash"]; "arm64" builds for
// aarch64-linux. [AlwaysIncluded] (cacert, iana-etc) is added to every
// image, and the packages are sorted and de-duplicated, so "curl/shell" is
// the same image as "shell/curl".
//
// # Building
//
// A request for a name at a tag goes through these steps:
//
//  1. the package source gives the tag's cache key and says whether it is
//     pinned (a commit, the bundled set); for a pinned source a request
//     seen before (by this process or, through the index, an earlier one)
//     is answered at once, without Nix;
//  2. a request whose build failed for a lasting reason (unknown packages,
//     a failed Nix build) a moment ago gets the same error again, without
//     Nix, for [Config.NegativeTTL];
//  3. Nix resolves and realises the packages and reports their closure:
//     once per request, however many clients ask at the same time;
//  4. the image key is a hash of everything the image's bytes depend on:
//     the image and layer formats, the layer budget, the popularity's
//     fingerprint, the source's cache key, the system, the command, and
//     the attribute paths the names resolved to with their store paths.
//     Since it is made of what the names resolved to, every spelling of a
//     package ("HELLO", "hello") gives one image, built once;
//  5. unless the index has the key, [layers.Group] splits the closure
//     into at most MaxLayers-1 groups, the LayerBuilder builds each (it
//     caches layers by content, so images that share store paths share
//     layers), the customisation layer goes last, and the config and the
//     two manifests (Docker v2 schema 2 and OCI: the same config bytes and
//     layer blobs, different media types, the same provenance annotations)
//     are written to the store, with the image's SBOM and the artifact
//     manifests that attach it to each manifest (see SBOM below);
//  6. the image is entered in the index, whose records in IndexDir keep it
//     across restarts (with the store paths of each layer, so that a lost
//     layer can be rebuilt); the Nix GC root of the build is released.
//
// A caller that gives up stops waiting; the build goes on for the others
// and for the cache. When every caller has left a build that still waits
// for a Nix slot (package nix's queue), it is cancelled: it has cost
// nothing yet. [Builder.CachedManifests] answers, without building or
// waiting, whether an image is cached (step 1), so that the registry can
// limit only the other requests.
//
// # SBOM and provenance
//
// Every image has an SPDX 2.3 JSON SBOM of its closure ([Image.SBOM]): a
// package per store path (name and version parsed from the path, the NAR
// hash as its checksum, a pkg:nix purl), a package for the image that
// CONTAINS them, and DEPENDS_ON for every edge of the closure graph; its
// bytes depend on the closure and the image key only. A CycloneDX 1.6
// JSON document says the same ([Image.CycloneDX]). For each document an
// OCI artifact manifest (artifactType [MediaTypeSPDX] or
// [MediaTypeCycloneDX], the empty config, the document as its layer) has
// each of the image's manifests as its subject: [Builder.Referrers] lists
// them for the referrers API. The SBOM, the empty
// blob and the artifact manifests are blobs of the image: in its record,
// verified, rebuilt and collected like its config. The manifests carry
// org.opencontainers.image.created (fixed, [Created]), .title (the
// resolved attribute paths joined with "/"), .source and .revision when
// the Nix is a [Provenancer], and [AnnotationStorePaths]. Records written
// before SBOMs load without them and have no referrers.
//
// # Image indexes
//
// Builder.Indexes answers a name without "arm64" with image indexes: a
// Docker manifest list and an OCI image index of the image for each of
// IndexSystems (linux/amd64, and linux/arm64 variant v8), built
// concurrently through the same steps as any image. The indexes are
// written to the store and kept in both members' records, so that they are
// served by digest (Builder.Manifest), survive a restart
// (Builder.CachedIndexes finds them without building), and are kept by
// garbage collection as long as a member is. An error building a member
// names its system; where the source cannot build a system at all (an
// error matching errors.ErrUnsupported: no builder for it), the name has
// no index, and index-accepting clients get the amd64 image alone. The registry decides, from the Accept header, whether a
// client gets an index or the amd64 image alone.
//
// # Integrity
//
// No blob is served that does not hash to its digest ([Builder.Blob]):
// each is verified the first time this process serves it and again when
// its file changes, and a background scrub ([Builder.Scrub]) hashes them
// all at [Config.ScrubRate]. A damaged blob is quarantined and rebuilt:
// configs, manifests and SBOMs from the image's bytes, layers by the
// LayerBuilder (from its cache, or after Nix realises the store paths
// again). At start, a record whose manifest, config or SBOM is missing or
// damaged is removed (an SBOM cannot be made again without Nix's
// closure), and layers that are missing or have another size
// are quarantined and rebuilt in the background; an image whose blob
// cannot be rebuilt is dropped, and built again when asked for.
//
// # Garbage collection
//
// [Builder.Collect] keeps the storage within [Config.StorageLimit] and
// drops the images not requested within [Config.Retention]: least
// recently requested images first, then the blobs no kept image has, then
// the LayerBuilder's cache ([CacheTrimmer]). It works through the
// [layers.BlobStore] interface (List, Delete and modification times), so
// any store has it. Several processes may share IndexDir and the store:
// record saves and collections hold one lock, each process loads the
// records the others write, and a blob that no record names is deleted
// only when a dropped image had it or it is older than [Config.GCGrace].
// Servers on different machines that share an object store (a
// [RecordStore] and [StateStore]) coordinate through it instead: one of
// them holds the collection lease, and no blob younger than the start of
// the oldest build in progress anywhere is deleted (see [StateStore]).
//
// # Customisation layer
//
// The last layer of every image is a symlink forest of the requested
// packages, the way nixpkgs' buildEnv makes one (see customisation in
// custom.go): /bin, /etc, /lib, /sbin and /share are real directories whose
// entries link into the packages that provide them, merged level by level
// where several do; plus /etc/passwd and /etc/group (root and nobody),
// /etc/nsswitch.conf, /tmp (1777), /root (700) and /usr/bin/env. Every
// entry has the fixed time [Created] and owner 0, so the same packages give
// the same bytes.
//
// # Logs
//
// One line per image built, and one per failed build:
//
//	level=INFO msg=build packages="[bashInteractive ...]" tag=latest system=x86_64-linux attrs="[...]"
//	    paths=24 layers=25 bytes=31457280 nix_duration=2.1s sbom_duration=1ms duration=3.4s docker_digest=sha256:... oci_digest=sha256:...
//	level=WARN msg="build failed" packages=[...] tag=latest system=... duration=... error="nix: unknown packages: foo"
//
// and one at Info for a build cancelled before Nix ran (msg="build
// cancelled"). A build refused by a full queue is logged at Debug only:
// the registry logs the request. Storage logs "quarantined a damaged
// blob", "rebuilt a blob", "dropped image" (with the reason), one
// "garbage collection" line per collection that removed something
// (images, blobs and bytes, cache entries, store paths, bytes before and
// after), and one "scrub" line per pass.
package images
