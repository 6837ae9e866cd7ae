# A two-path closure for TestRealNixStore: nixery-layers-test refers to
# nixery-layers-test-dep (a text file naming it and a symlink to it). Both hold
# a read-only file, an executable copied from the host and a symlink. Builders
# use absolute paths and end with `exit 0` (see /work/coord/COMMON.md).
let
  dep = derivation {
    name = "nixery-layers-test-dep";
    system = "x86_64-linux";
    builder = "/bin/bash";
    args = [ "-c" "/bin/mkdir -p $out/lib $out/share/doc && /bin/cp /bin/true $out/lib/libtrue && /bin/echo dep > $out/share/doc/README && /bin/ln -s ../share/doc/README $out/lib/readme && exit 0" ];
  };
in derivation {
  name = "nixery-layers-test";
  system = "x86_64-linux";
  builder = "/bin/bash";
  args = [ "-c" "/bin/mkdir -p $out/bin && /bin/echo ${dep}/lib/libtrue > $out/bin/which-dep && /bin/cp /bin/echo $out/bin/echo && /bin/ln -s ${dep} $out/dep && exit 0" ];
}
