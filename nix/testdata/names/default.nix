# A package set for name resolution tests: a name starting with a digit
# (reached as "7zip" through the "_" prefix), mixed case, nesting, and an
# attribute that throws when evaluated (like a removed alias in nixpkgs).
# @NONCE@ is replaced by the test so every run builds afresh.
{ system ? "x86_64-linux", ... }:
let
  trivial = name: derivation {
    inherit name system;
    builder = "/bin/bash";
    args = [ "-c" "/bin/mkdir -p $out/bin && echo '@NONCE@ ${name}' > $out/bin/${name}; exit 0" ];
  };
in
{
  _7zip = trivial "7zip";
  MixedCase = trivial "mixed-case";
  outer = { inner = { leaf = trivial "leaf"; }; notAPackage = 42; };
  removed = throw "removed has been removed";
}
