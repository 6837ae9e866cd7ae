# A package set whose only package records the nice value its builder ran
# at, for the test that Nix runs at a lower priority than the server.
# @NONCE@ is replaced by the test, so that the builder runs in every run.
{ system ? "x86_64-linux", ... }:
{
  nice = derivation {
    name = "nice";
    inherit system;
    nonce = "@NONCE@";
    builder = "/bin/sh";
    args = [ "-c" "/usr/bin/nice > $out; exit 0" ];
  };
}
