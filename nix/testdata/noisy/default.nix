# A package set whose only package writes about 1 MB to its standard error
# (thousands of lines, then one line of 300 KB) and fails, for the test
# that Nix's log is capped. @NONCE@ is replaced by the test, so that the
# derivation is new in every run.
{ system ? "x86_64-linux", ... }:
{
  noisy = derivation {
    name = "noisy";
    inherit system;
    nonce = "@NONCE@";
    builder = "/bin/bash";
    args = [ "-c" "for i in $(/usr/bin/seq 1 10000); do echo \"noise line $i of a builder that talks too much\" >&2; done; /usr/bin/head -c 300000 /dev/zero | /usr/bin/tr '\\0' x >&2; echo >&2; echo 'the last words of the noisy builder' >&2; exit 1" ];
  };
}
