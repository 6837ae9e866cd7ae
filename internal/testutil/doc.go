// Package testutil holds what the project's tests and benchmarks share, so
// that each fake, reader and launcher is written once:
//
//   - store paths: [StorePath] makes a valid store path for a name, and
//     [StoreTree] writes a fake Nix store on disk ([StoreFS] in memory);
//   - layers: [Gunzip], [ReadTar] and [ReadLayer] read a layer blob back;
//   - tools: [RequireTools] fails a test (never skips it, except under
//     -short) when a program it needs, or a Docker engine, is missing;
//   - `nixery serve`: [BuildNixery] builds the binary once, [StartNixery]
//     runs it on a free loopback port with its log captured, and
//     [ServeNixery] does the same for a test and checks at cleanup that it
//     shut down cleanly;
//   - registry clients: [GetManifest] fetches a manifest and parses it
//     with go-containerregistry's types;
//   - load: [PackageSet] writes a package set of many cheap (or big, or
//     slow) packages and [GitCommit] pins it in a git repository,
//     [ClientFrom] plays many clients from distinct loopback addresses,
//     and [Nixery.RSS] and [Nixery.Goroutines] read a running server's
//     memory and goroutines;
//   - logs: [SyncBuffer] is a buffer a server writes while the test reads;
//   - blobs: [ReadBlob] reads a blob of a store back whole;
//   - disks: [Tmpfs] mounts a small disk for a test to fill.
//
// This package imports no package of the module, so that the in-package
// tests of closure and layers can use it without an import cycle. What
// needs the module's packages lives in sub-packages: memstore is an
// in-memory layers.BlobStore that can damage its blobs, fakenix fakes Nix
// and a layer builder for the unit tests of images and registry, and
// objstoretest is the conformance suite of the object-store backends
// (layers/s3store, layers/gcsstore).
//
// testutil is for tests and for the benchmark packages (benchmarks/,
// layers/layerbench); no production package may import it, which
// TestNotImportedByProduction checks.
package testutil
