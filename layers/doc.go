// Package layers turns sets of Nix store paths into OCI image layers: it
// decides which store paths share a layer ([Group], see "Grouping" below),
// writes each layer as a reproducible gzip-compressed tar using every core
// ([Assembler]), and keeps layers and their parts in content-addressed caches
// ([BlobStore], [FSStore]) so that a store path is compressed once and a
// layer is built once, whatever image asks for it.
//
// # Grouping
//
// [Group] decides which store paths share a layer. A client that already holds
// a layer skips it, and a layer is identified by its exact set of store paths,
// so the aim is that the same store paths form the same layers in different
// images as often as possible. A layer's contents therefore depend on
// properties of the paths themselves (their popularity in the package set,
// their size and their references) and as little as possible on which other
// packages happen to share the image.
//
// The popularity of a path (see [closure.Compute]) is the number of paths of
// the package set whose closure holds it, that is, the number of its
// ancestors. For a path P referenced by Q, pop(P) >= pop(Q)+1, and equality
// means every ancestor of P is Q or an ancestor of Q: whenever P is in an
// image and was not asked for directly, Q is there too. Images that ask for P
// itself are the exception, and they are common for the packages users name:
// a path is never put into its referrer's layer for free.
//
// How often does an image hold P without Q? Images get P because they ask
// for P itself or for one of its pop(P) ancestors; counting each such request
// once, pop(P)+1 kinds of image hold P, and of those, the pop(Q)+1 that ask
// for Q or an ancestor of Q also hold Q when Q references P. The share of
// images holding P but not Q is then (pop(P)-pop(Q))/(pop(P)+1): never zero,
// since any image may ask for P alone, and larger for P's own requests the
// less popular P is.
//
// Group works in three steps:
//
//  1. Parents. Each path's parent is the path referencing it (in the image)
//     with the highest popularity, ties to the lower store path: the
//     referrer most likely to come along with it.
//  2. Tiny merges (see Pull time). Every path starts as a group of its
//     own. A group G headed by H (the member whose parent is outside G)
//     joins the group of H's parent Q while that is expected to cost less
//     than the layer bytes B (the bytes that download in the time a
//     layer's fixed cost takes), cheapest first, at bytes(G)*again +
//     bytes(group of Q)/40: G downloaded once more by each of the
//     max(pop(H)-pop(Q), 1) kinds of image that hold H without Q (see
//     above) that a client pulls, plus the receiving group's risk as in
//     the budget merges. A client is taken to pull at most a horizon of
//     200 of the pop(H)+1 kinds of image holding H, so again is
//     max(pop(H)-pop(Q), 1) times min(1, 200/(pop(H)+1)). Below the
//     horizon only groups smaller than B can move; above it, a large path
//     that a widely used referrer nearly always comes with joins it too.
//     Groups headed by a top-level path (no parent) stay. These merges do
//     not depend on the budget, so images that hold the same paths under
//     the same parents make the same ones.
//  3. Budget merges. While there are more groups than the budget, the
//     group whose merge is expected to duplicate the fewest bytes is
//     merged. A group G headed by H can go two ways: into the group of H's
//     parent Q, at an expected cost of bytes(G)*(pop(H)-pop(Q))/(pop(H)+1)
//     + bytes(group of Q)/40 (the share of images holding H that lack Q,
//     times G's bytes, which then travel in a second layer; plus a
//     fortieth of the receiving group's bytes, for the risk that another
//     image decides differently and the receiving layer, changed, must be
//     downloaded again), or into a rest layer, at bytes(G) (a rest is
//     specific to the image, so its bytes are counted as downloaded again).
//     There are two rest layers: one for groups headed by the image's
//     top-level paths (no parent: the packages asked for, which differ
//     from image to image) and one for all others (shared dependencies,
//     which images have in common far more often), so that the paths an
//     image asks for do not change the layer of the dependencies it shares
//     with the previous one. Groups whose parent is in a rest can only go
//     to a rest. The first group sent to a rest starts it; if only the two
//     rests are left and the budget is 1, they are merged. Equal costs go
//     to the lower head store path. Paths missing from the popularity map
//     count 0.
//
// Apart from tiny merges no path joins another when the image fits the
// budget, so an image that asks for a path alone gets the same layer for it
// as an image that holds it through its referrer. Only merges forced by the
// budget make layers differ between images, and the costs send small,
// rarely shared paths first: large popular paths (glibc) keep layers of
// their own longest; small paths join their main referrer or, when that
// referrer is large, a rest layer, so large layers are rarely changed by
// small decisions.
//
// # Pull time
//
// Every layer a client downloads costs a fixed time besides its bytes (the
// registry round trips, unpacking and bookkeeping of one layer): about 50 ms
// with Debian's Docker 20.10 (a 41-layer image pulled in 3.1-3.4 s, the
// same bytes in one layer in 0.9-1.2 s). [Group] assumes a bandwidth of
// 100 MB/s and 50 ms a layer ([DefaultBandwidth], [DefaultPerLayer];
// [GroupOptions] changes them), so a layer costs as much as B = 5 MB of
// download. A layer of a few kilobytes then costs far more than its bytes,
// and keeping it apart pays only if enough images would otherwise download
// it again: step 2 merges a tiny group into its parent's when the bytes the
// merge is expected to duplicate, counted once for every kind of image that
// holds the group without the parent, stay below B. It runs before the
// budget's merges, so that those start from the same tiny merges in every
// image (on the benchmark corpora this also lowers the pull bytes where the
// budget forces merges). A path used only
// through one referrer (pop(H) = pop(Q)+1) thus joins it when it and the
// risk to the receiving layer are below B; a tiny library that many other
// packages use keeps its own layer. While fewer than the horizon's kinds
// of image hold a path (pop(H)+1 <= 200, most paths of a package set of a
// few hundred), only groups below B move, so two such paths of B bytes or
// more never share a layer unless the budget forces it.
//
// The horizon ([DefaultHorizon], [GroupOptions.Horizon]) bounds the
// counts: a client pulls tens or hundreds of images, not the thousands of
// kinds that hold a library of a large package set. Without it, a path
// that 27,000 packages use and 2 of them without its main referrer (tar
// and dpkg in Debian) would count 2 downloads again; with it 2*200/27,001.
// Such near-certain companions then share a layer whatever the budget,
// where before the budget merged them in some images and not in others,
// and each image that decided differently downloaded both again. On the
// benchmarks' archive corpus this lowered the pull bytes in most cells and
// the modelled pull time in many; on the main corpus, where 9 of 776 paths
// are held by more than 200 kinds, nothing changed. Any horizon from 150
// to 1000 gives nearly the same figures (benchmarks/README.md).
// Sizes are NAR sizes, which overstate the compressed download (typically
// two to four times), so B counts conservatively: fewer merges than the
// compressed sizes would pay for.
//
// The trade-off: a tiny path that one image asks for alone and another
// holds through its referrer is in different layers, so where the budget
// forces nothing the pull bytes grow a little above the ideal (on the
// benchmark corpus 1.001-1.008 instead of 1.000), for fewer layers per
// image and a lower pull time (benchmarks/README.md has the figures).
// GroupOptions with a negative PerLayer turns step 2 off.
//
// # Order
//
// The order of layers does not change which layers a client must fetch, but
// the Docker engine with its classic image store keeps layers by chain (a
// layer together with every layer below it), so it reuses only the longest
// prefix of an image's layers that an image it pulled before starts with. If
// layer i is present in another image with probability p(i), independently,
// the expected bytes of the common prefix, the sum over k of bytes(k) times
// the product of p(j) for j <= k, is largest when layers are sorted by
// bytes(i)*p(i)/(1-p(i)), descending (swapping two neighbours shows it).
// Group estimates p(i) from pop/top, where pop is the highest popularity in
// the layer and top the highest in the image, and takes the fourth root of
// the odds: the key is bytes*((pop+1)/(top-pop+1))^(1/4). The estimate is
// crude (images are not independent draws, and a layer's presence in the
// previous image is what counts), and the damped key orders by size first
// and popularity second; on the benchmark corpus it gives the Docker engine
// fewer bytes than the plain odds (benchmarks/README.md), and the
// benchmarks' sensitivity table of [GroupOptions.Order], the exponent,
// shows it ahead of size alone, 1/8, 1/2 and 1 on data it was not tuned
// on. Large
// layers that every image holds (glibc) come first, small image-specific
// ones later, the rest layers last. Equal keys go to the lower first store
// path. Each layer's paths are sorted. Sizes are NAR sizes.
//
// # Grouping, a worked example
//
// An image holding curl, with popularities from the package set and NAR sizes:
//
//	path      pop   size   references
//	curl        2   0.5M   libcurl glibc
//	libcurl    12     1M   openssl zlib nghttp2 glibc
//	nghttp2    13   0.2M   glibc
//	openssl   150     6M   zlib glibc
//	zlib      300   0.1M   glibc
//	glibc     900    30M
//
// Parents: libcurl -> curl, nghttp2 -> libcurl, openssl -> libcurl,
// zlib -> openssl (pop 150 beats libcurl's 12), glibc -> zlib. With the
// default budget every path is a layer of its own, in the order glibc
// (30M*(901/1)^(1/4) = 164M), openssl (6M*(151/751)^(1/4) = 4.0M), libcurl
// (1M*(13/889)^(1/4) = 0.35M), curl (0.5M*(3/899)^(1/4) = 0.12M), zlib
// (0.1M*(301/601)^(1/4) = 0.084M) and nghttp2 (0.2M*(14/888)^(1/4) =
// 0.071M).
//
// With a budget of 5, the cheapest move is nghttp2 into libcurl:
// 0.2M*(13-12)/14 + 1M/40 = 0.04M (curl to the top-level rest would cost
// 0.5M, zlib to the shared rest 0.1M, libcurl into curl
// 1M*10/13 + 0.5M/40 = 0.78M, openssl into libcurl 6M*138/151 + 1M/40 =
// 5.51M, glibc into zlib 30M*600/901 + 0.1M/40 = 19.98M). The layers are
// {glibc}, {openssl}, {libcurl, nghttp2} (its key uses nghttp2's pop 13:
// 0.43M), {curl}, {zlib}. With 4, zlib starts the shared rest (0.1M; into
// openssl it would cost 0.1M*150/301 + 6M/40 = 0.2M) and curl the top-level
// rest (0.5M), which frees no layer; then {libcurl, nghttp2} joins the
// shared rest (1.2M: its parent curl is in a rest now): {glibc}, {openssl},
// rest {libcurl, nghttp2, zlib}, rest {curl}. With 3, openssl follows (6M):
// {glibc}, rest {libcurl, nghttp2, openssl, zlib}, rest {curl}. With 2,
// only glibc is left to move and joins the shared rest; with 1, the two
// rests merge. Budgets that small leave no choice worth making.
//
// These are the budget merges alone (a negative PerLayer). With the
// default model, B = 5,000,000 bytes (4.77M), the tiny merges come first:
// nghttp2 joins libcurl at 0.2M*(13-12) + 1M/40 = 0.23M, less than B;
// {libcurl, nghttp2} into curl would cost 1.2M*(12-2) = 12M and zlib into
// openssl 0.1M*(300-150) + 6M/40 = 15.2M, so they stay. At the default
// budget the layers are then {glibc}, {openssl}, {libcurl, nghttp2},
// {curl}, {zlib}, as with a budget of 5 above, and smaller budgets go on
// from there. At 1 s a layer (B = 100 MB) {libcurl, nghttp2} joins curl
// and zlib joins openssl; glibc and {openssl, zlib}, tiny now, stay apart
// (30M*600 and 6.1M*138 bytes): {glibc}, {openssl, zlib}, {curl,
// libcurl, nghttp2}.
//
// # Layer tarballs
//
// A layer's tar holds the directory entries nix/ and nix/store/ (mode 0755),
// then the entries of each store path, store paths sorted by name. Within a
// store path, entries come in NAR order: a directory, then its children
// sorted by name, each child's subtree complete before the next. So in
//
//	/nix/store/…-tree/a/x
//	/nix/store/…-tree/a-b
//
// a/ and a/x come before a-b, although "a-b" < "a/x" as strings.
// Every entry has uid and gid 0, no user or group name, the mtime
// 1970-01-01T00:00:01Z ([Epoch]) and the store's modes: files 0444, or 0555
// if executable; directories 0555; symlinks 0777, kept as symlinks. Hard
// links (from nix-store --optimise) are written as regular files. Headers are
// USTAR, with a PAX extended header only for names or link targets that do
// not fit. Nothing else goes into the tar, so the same store paths give the
// same bytes on any machine.
//
// # Canonical compressed format
//
// Tar entries are whole 512-byte blocks, so the tar of a layer is the
// concatenation of independent segments: the store header (nix/, nix/store/),
// one segment per store path, and the trailer (two zero blocks). A layer blob
// is the concatenation of gzip members (RFC 1952 allows any number; Go's
// gzip reader, containerd, gzip and pigz read them as one stream):
//
//	header member | members of path 1 | members of path 2 | … | trailer member
//
// Each store path's segment is cut into chunks of ChunkSize uncompressed
// bytes (1 MiB by default; the last chunk is shorter) and each chunk is
// compressed on its own into one member, with klauspost/compress at a fixed
// level and a fixed gzip header (no name, mtime 0, OS byte 255). A path's
// members therefore depend only on the path's contents and the format
// settings, never on the other paths of the layer or on what was cached
// before.
//
// For example, with 1 MiB chunks, a layer of glibc (a 3.5 MiB segment) and
// zlib (0.3 MiB) is
//
//	H | g1 g2 g3 g4 | z1 | T      (g1-g3 hold 1 MiB each, g4 0.5 MiB)
//
// and a later layer of zlib and openssl (1.6 MiB) is H | z1 | o1 o2 | T,
// where z1 is copied from the member cache, byte for byte the member the
// first layer holds. Built from scratch in another cache directory, the same
// layer has the same bytes.
//
// The chunks of a build are compressed in parallel by Options.Workers
// goroutines (GOMAXPROCS by default), so even one large store path keeps
// every core busy, and written in order. The blob's digest and size and the
// DiffID (the sha256 of the uncompressed tar) come out of the same pass that
// writes the blob. Four stages run at once: a producer walks the store and
// cuts the tar into chunks, a hasher feeds them to the DiffID hash and hands
// them to the workers, the workers compress, and a writer takes compressed
// chunks and cached members in layer order into the blob and the member
// cache. Bounded channels and a bounded pool of chunk buffers link them, so
// memory stays at a few MiB per worker whatever the size of the layer.
//
// # Caches
//
// An [Assembler] keeps two caches in its cache directory. The member cache
// holds, per store path, the concatenated members of its segment, keyed by
// the store path's name (store paths are immutable) and the format (see
// [Assembler.Format]: FormatVersion, level, chunk size, compressor and Go
// versions). A layer whose store paths are all in the member cache is
// assembled without compressing anything: the cached members are streamed
// into the blob, checked against their recorded CRC-32C, while the tar is
// regenerated from the store only to hash the DiffID.
//
// The layer cache maps the sha256 of the format and the sorted store paths
// to the layer's [Descriptor]. A hit is checked against the blob store (the
// blob must exist with the recorded size).
//
// Every cache file is written to a temporary file and renamed into place.
// Entries are checked when used; a truncated or corrupt entry is removed and
// rebuilt, never served. Member entries are not fsync'd (every use checks
// their length and CRC, so one damaged by a power loss is rebuilt); layer
// entries are small and written durably. Concurrent requests for the same
// layer build it once, and concurrent builds that share a store path
// compress it once. A process killed in the middle of a build leaves only
// temporary files, which are never read; their writers hold flocks on them
// (package internal/atomicfile), and a new Assembler or [FSStore] removes
// the unlocked ones, also while another process writes its own.
//
// [Assembler.Trim] keeps the member cache within a size, for a garbage
// collector. [Verifier] checks stored blobs against their digests before
// they are served.
package layers
