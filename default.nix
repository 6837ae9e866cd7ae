# Builds the nixery binary with nixpkgs' buildGoModule, for users who have
# nixpkgs:
#
#   nix-build                                      # <nixpkgs> from NIX_PATH
#   nix-build --arg pkgs 'import /src/nixpkgs { }'
#
# The result's bin/nixery finds nix-instantiate, nix-store, nix and git on
# its PATH (wrapped in). The bundled package set it defaults to copies
# Debian 12 binaries and so only builds on such a host (see .ci/setup);
# elsewhere, set NIXERY_CHANNEL, NIXERY_PKGS_REPO or NIXERY_PKGS_PATH.
#
# vendorHash is the NAR hash of `go mod vendor`; after changing go.mod or
# go.sum, print the new one with .ci/vendorhash.
{ pkgs ? import <nixpkgs> { } }:

let
  # go.mod asks for Go 1.26; use nixpkgs' Go 1.26 builder where it has one.
  buildGoModule = pkgs.buildGo126Module or pkgs.buildGoModule;
  inherit (pkgs) lib;
in
buildGoModule {
  pname = "nixery";
  version = "0.1.0";

  src = lib.cleanSourceWith {
    src = lib.cleanSource ./.;
    # Only what the Go build reads: no benchmark results, no CI scripts.
    filter = path: type:
      let rel = lib.removePrefix (toString ./. + "/") (toString path);
      in !(lib.hasPrefix "benchmarks/results" rel || lib.hasPrefix ".ci" rel || rel == "default.nix" || rel == "result");
  };

  vendorHash = "sha256-8mmtCdXDZyGABwxZfWGqWqz1k8jx0BqT4Rfpf5uKRJg=";

  subPackages = [ "cmd/nixery" ];
  ldflags = [ "-s" "-w" ];
  env.CGO_ENABLED = "0";

  # The tests need Nix, root and container engines: run them with .ci/test.
  doCheck = false;

  nativeBuildInputs = [ pkgs.makeWrapper ];
  postInstall = ''
    wrapProgram $out/bin/nixery --prefix PATH : ${lib.makeBinPath [ pkgs.nix pkgs.git ]}
  '';

  meta = {
    description = "Container registry that builds images from Nix packages on demand";
    mainProgram = "nixery";
    platforms = lib.platforms.linux;
  };
}
