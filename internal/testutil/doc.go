// Package testutil holds what the project's tests and benchmarks share, so
// that each fake, reader and launcher is written once:
//
//   - store paths: [StorePath] makes a valid store path for a name, and
//     [StoreTree] writes a fake Nix store on disk ([StoreFS] in memory);
//   - layers: [Gunzip] and [ReadTar] read a layer blob back;
//   - tools: [RequireTools] fails a test (never skips it, except under
//     -short) when a program it needs, or a Docker engine, is missing;
//   - `nixery serve`: [BuildNixery] builds the binary once, [StartNixery]
//     runs it on a free loopback port with its log captured, and
//     [ServeNixery] does the same for a test and checks at cleanup that it
//     shut down cleanly;
//   - registry clients: [GetManifest] fetches a manifest and parses it
//     with go-containerregistry's types.
//
// The in-memory blob store (a layers.BlobStore) lives in the sub-package
// memstore, with ways to damage a blob: this
// package imports no package of the module, so that the in-package tests
// of closure and layers can use it without an import cycle.
//
// testutil is for tests and for the benchmarks under benchmarks/; no
// production package may import it.
package testutil
