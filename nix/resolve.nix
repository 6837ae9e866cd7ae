# Resolves requested package names against a package set. Evaluated by
# nix-instantiate --eval --strict --json with `--argstr request JSON`; the
# names only ever reach Nix as data inside that JSON string, never as code.
#
# request = {
#   source = { kind = "path" | "tarball" | "git"; path; url; ref; rev; };
#   system = "x86_64-linux";
#   names = [ "curl" "python3Packages.six" ... ];
# }
#
# Result: { unknown = [ names... ]; } when any name is not a derivation in
# the set, otherwise { packages = [ { name; attrPath; drv; out; } ]; }
# in request order. Looking up a name follows upstream Nixery: dots separate
# nested attributes; a component missing as spelt is looked up with a "_"
# prefix when it starts with a digit, then case-insensitively (Docker
# lower-cases image names, so "bashinteractive" finds "bashInteractive").
{ request }:

let
  req = builtins.fromJSON request;
  src = req.source;

  root =
    if src.kind == "path" then src.path
    else if src.kind == "tarball" then builtins.fetchTarball { url = src.url; }
    else if src.kind == "git" then
      builtins.fetchGit ({ url = src.url; }
        // (if (src.rev or "") != "" then { rev = src.rev; allRefs = true; } else { })
        // (if (src.ref or "") != "" then { ref = src.ref; } else { }))
    else throw "nixery: unknown source kind ${src.kind}";

  # Call the set with the arguments it declares among system, config and
  # overlays (nixpkgs takes all three; a small set perhaps only system).
  f = import root;
  wanted = { system = req.system; config = { }; overlays = [ ]; };
  declared = builtins.functionArgs f;
  pkgs =
    if !builtins.isFunction f then f
    else if declared == { } then f wanted
    else f (builtins.intersectAttrs declared wanted);

  upper = [ "A" "B" "C" "D" "E" "F" "G" "H" "I" "J" "K" "L" "M" "N" "O" "P" "Q" "R" "S" "T" "U" "V" "W" "X" "Y" "Z" ];
  lower = [ "a" "b" "c" "d" "e" "f" "g" "h" "i" "j" "k" "l" "m" "n" "o" "p" "q" "r" "s" "t" "u" "v" "w" "x" "y" "z" ];
  toLower = builtins.replaceStrings upper lower;

  # findKey returns the attribute of set that component c names, or null.
  findKey = set: c:
    let
      digit = builtins.match "[0-9].*" c != null;
      folded = toLower c;
      matches = builtins.filter
        (k: toLower k == folded || (digit && toLower k == "_" + folded))
        (builtins.attrNames set);
    in
    if set ? ${c} then c
    else if digit && set ? ${"_" + c} then "_" + c
    else if matches != [ ] then builtins.head matches
    else null;

  # lookup walks the components; an attribute whose evaluation throws (a
  # removed alias, say) counts as missing.
  lookup = set: comps: path:
    if comps == [ ] then { ok = true; value = set; inherit path; }
    else
      let
        key = findKey set (builtins.head comps);
        v = builtins.tryEval set.${key};
      in
      if key == null || !v.success then { ok = false; }
      else if builtins.tail comps != [ ] && !builtins.isAttrs v.value then { ok = false; }
      else lookup v.value (builtins.tail comps) (path ++ [ key ]);

  isDrv = v:
    let t = builtins.tryEval (builtins.isAttrs v && (v.type or null) == "derivation");
    in t.success && t.value;

  resolve = name:
    let
      comps = builtins.filter builtins.isString (builtins.split "\\." name);
      r = lookup pkgs comps [ ];
    in
    { inherit name; ok = r.ok && isDrv r.value; } // (if r.ok then { inherit (r) value path; } else { });

  results = map resolve req.names;
  unknown = map (r: r.name) (builtins.filter (r: !r.ok) results);
in
if unknown != [ ] then { inherit unknown; }
else {
  packages = map
    (r: {
      inherit (r) name;
      attrPath = builtins.concatStringsSep "." r.path;
      # Not named outPath: a set with outPath turns into that string in JSON.
      drv = r.value.drvPath;
      out = r.value.outPath;
    })
    results;
}
