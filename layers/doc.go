// Package layers turns sets of Nix store paths into OCI image layers: it
// decides which store paths share a layer ([Group], see "Grouping" below),
// writes each layer as a reproducible gzip-compressed tar using every core
// ([Assembler]), and keeps layers and their parts in content-addressed caches
// ([BlobStore], [FSStore]) so that a store path is compressed once and a
// layer is built once, whatever image asks for it.
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
// rebuilt, never served. Concurrent requests for the same layer build it
// once, and concurrent builds that share a store path compress it once. A
// process killed in the middle of a build leaves only temporary files, which
// are never read and are removed a day later.
package layers
