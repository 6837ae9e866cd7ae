package corpus

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Extra attributes the generated set provides besides one per Debian
// package, so that nixery's always-included packages and its `shell`
// meta-package resolve.
const (
	// AttrCacert is a store path named nss-cacert-<version> holding the
	// host's CA bundle as etc/ssl/certs/ca-bundle.crt (and a
	// ca-certificates.crt symlink to it), as nixpkgs' cacert does. The
	// bundle is empty when the host has none.
	AttrCacert = "cacert"
	// AttrIanaEtc is a store path named iana-etc-<version> holding the
	// host's etc/services and etc/protocols, as nixpkgs' iana-etc does.
	AttrIanaEtc = "iana-etc"
)

// ShellAliases maps the nixpkgs attribute names that nixery's `shell`
// meta-package asks for to the Debian packages that provide them. An alias
// is generated only when its Debian package is in the set.
var ShellAliases = map[string]string{
	"bashInteractive": "bash",
	"coreutils":       "coreutils",
	"moreutils":       "moreutils",
	"nano":            "nano",
}

// genPackage is one derivation to generate.
type genPackage struct {
	attr     string
	name     string // store path name
	files    []string
	deps     []string // attributes
	debName  string
	byteSize int64
}

// builderScript copies the files named in $files (paths relative to $root)
// into $out with GNU tar, which keeps symlinks and hard links (setuid,
// setgid and sticky bits are dropped: Nix forbids them and its seccomp filter
// makes chmod fail), and writes
// the store paths of the dependencies to nix-support/propagated-deps, where
// Nix's reference scanner finds them. Files that cannot be read are skipped
// with a warning. Nix runs builders without PATH, hence the absolute paths;
// the final `exit 0` avoids NixOS/nix#2176.
const builderScript = `set -u
/bin/mkdir -p "$out" || exit 1
cd "$root" || exit 1
/bin/tar --create --file=- --no-recursion --verbatim-files-from --files-from="$files" --ignore-failed-read --warning=no-failed-read --mode=a-st | /bin/tar --extract --file=- --directory="$out" --no-same-owner
status=("${PIPESTATUS[@]}")
if [ "${status[1]}" != 0 ]; then echo "corpus: extracting $name failed" >&2; exit 1; fi
if [ "${status[0]}" != 0 ]; then echo "corpus: some files of $name could not be read" >&2; fi
if [ -n "$deps" ]; then
  /bin/mkdir -p "$out/nix-support" || exit 1
  printf '%s\n' $deps > "$out/nix-support/propagated-deps" || exit 1
fi
exit 0
`

// cacertScript builds the cacert attribute.
const cacertScript = `set -u
/bin/mkdir -p "$out/etc/ssl/certs" || exit 1
if [ -r "$root/etc/ssl/certs/ca-certificates.crt" ]; then
  /bin/cp -L "$root/etc/ssl/certs/ca-certificates.crt" "$out/etc/ssl/certs/ca-bundle.crt" || exit 1
else
  : > "$out/etc/ssl/certs/ca-bundle.crt" || exit 1
fi
/bin/ln -s ca-bundle.crt "$out/etc/ssl/certs/ca-certificates.crt" || exit 1
exit 0
`

// ianaEtcScript builds the iana-etc attribute.
const ianaEtcScript = `set -u
/bin/mkdir -p "$out/etc" || exit 1
for f in services protocols; do
  if [ -r "$root/etc/$f" ]; then /bin/cp -L "$root/etc/$f" "$out/etc/$f" || exit 1; fi
done
exit 0
`

// generate writes the Nix package set for the packages named in sel (a
// closed subset of g) into dir: default.nix, mk.nix, builder scripts,
// all.nix and files/<attr>.list. root is the directory the dpkg paths are
// relative to. It returns the generated packages by attribute and the
// aliases.
func generate(dir, root string, g *DepGraph, sel []string) (map[string]*genPackage, map[string]string, error) {
	byName := map[string]*DebPackage{}
	for i := range g.Packages {
		byName[g.Packages[i].Name] = &g.Packages[i]
	}
	inSel := map[string]bool{}
	for _, n := range sel {
		if byName[n] == nil {
			return nil, nil, fmt.Errorf("corpus: package %q is not installed", n)
		}
		inSel[n] = true
	}
	pkgs := map[string]*genPackage{}
	canon := &canonicalizer{root: root, dirs: map[string]string{}}
	for _, n := range sel {
		p := byName[n]
		gp := &genPackage{attr: AttrName(n), name: storeName(n, p.Version), debName: n}
		for _, d := range g.Deps[n] {
			if !inSel[d] {
				return nil, nil, fmt.Errorf("corpus: selection is not closed: %s depends on %s", n, d)
			}
			gp.deps = append(gp.deps, AttrName(d))
		}
		seen := map[string]bool{}
		for _, f := range p.Files {
			rel, ok := canon.path(f)
			if !ok || seen[rel] {
				continue
			}
			seen[rel] = true
			fi, err := os.Lstat(filepath.Join(root, rel))
			if err != nil {
				continue // listed but gone, or unreadable
			}
			switch m := fi.Mode(); {
			case m.IsDir(), m.Type() == fs.ModeSymlink:
			case m.IsRegular():
				gp.byteSize += fi.Size()
			default:
				continue // devices, sockets, fifos: not allowed in the store
			}
			gp.files = append(gp.files, rel)
		}
		pkgs[gp.attr] = gp
	}
	aliases := map[string]string{}
	for alias, deb := range ShellAliases {
		if inSel[deb] && AttrName(deb) != alias {
			aliases[alias] = AttrName(deb)
		}
	}
	for _, a := range []string{AttrCacert, AttrIanaEtc} {
		if pkgs[a] != nil {
			return nil, nil, fmt.Errorf("corpus: Debian package attribute %q collides with a generated one", a)
		}
	}
	for a := range aliases {
		if pkgs[a] != nil {
			return nil, nil, fmt.Errorf("corpus: Debian package attribute %q collides with an alias", a)
		}
	}

	filesDir := filepath.Join(dir, "files")
	if err := os.RemoveAll(filesDir); err != nil {
		return nil, nil, err
	}
	if err := os.MkdirAll(filesDir, 0o755); err != nil {
		return nil, nil, err
	}
	attrs := make([]string, 0, len(pkgs))
	for a := range pkgs {
		attrs = append(attrs, a)
	}
	sort.Strings(attrs)
	for _, a := range attrs {
		var b bytes.Buffer
		for _, f := range pkgs[a].files {
			b.WriteString(f)
			b.WriteByte('\n')
		}
		if err := os.WriteFile(filepath.Join(filesDir, a+".list"), b.Bytes(), 0o644); err != nil {
			return nil, nil, err
		}
	}

	var nix bytes.Buffer
	nix.WriteString(`# Generated by github.com/nixery-go/nixery/benchmarks/corpus from the dpkg
# database of the machine it ran on: one derivation per installed Debian
# package, holding the package's files and referring to the store paths of
# its dependencies. Do not edit; run the generator again.
{ system ? builtins.currentSystem, ... }:
let
  mk = import ./mk.nix { inherit system; };
  self = {
`)
	for _, a := range attrs {
		p := pkgs[a]
		fmt.Fprintf(&nix, "    %s = mk { name = %s; files = ./files/%s.list; deps = [", nixString(a), nixString(p.name), a)
		for _, d := range p.deps {
			fmt.Fprintf(&nix, " self.%s", nixString(d))
		}
		nix.WriteString(" ]; };\n")
	}
	fmt.Fprintf(&nix, "    %s = mk.extra { name = %s; script = ./cacert.sh; };\n",
		nixString(AttrCacert), nixString(storeName("nss-cacert", versionOf(byName, "ca-certificates"))))
	fmt.Fprintf(&nix, "    %s = mk.extra { name = %s; script = ./iana-etc.sh; };\n",
		nixString(AttrIanaEtc), nixString(storeName("iana-etc", versionOf(byName, "netbase"))))
	aliasNames := make([]string, 0, len(aliases))
	for a := range aliases {
		aliasNames = append(aliasNames, a)
	}
	sort.Strings(aliasNames)
	for _, a := range aliasNames {
		fmt.Fprintf(&nix, "    %s = self.%s;\n", nixString(a), nixString(aliases[a]))
	}
	nix.WriteString("  };\nin\nself\n")

	mk := fmt.Sprintf(`# Generated by github.com/nixery-go/nixery/benchmarks/corpus. Do not edit.
{ system }:
let
  root = %s;
  script = builtins.readFile ./builder.sh;
in
{
  __functor = _: { name, files, deps }: derivation {
    inherit name system files deps root;
    builder = "/bin/bash";
    args = [ "-c" script ];
  };
  extra = { name, script }: derivation {
    inherit name system root;
    builder = "/bin/bash";
    args = [ "-c" (builtins.readFile script) ];
  };
}
`, nixString(root))

	// all.nix builds everything and records attribute -> store path as
	// JSON in one output, which also serves as the GC root.
	all := `# Generated by github.com/nixery-go/nixery/benchmarks/corpus. Do not edit.
# Builds every package of default.nix; the output is a JSON object from
# attribute name to store path.
let
  pkgs = import ./default.nix { };
in
derivation {
  name = "nixery-corpus-index";
  system = builtins.currentSystem;
  builder = "/bin/bash";
  index = builtins.toJSON (builtins.mapAttrs (n: v: v.outPath) pkgs);
  passAsFile = [ "index" ];
  args = [ "-c" "/bin/cp \"$indexPath\" \"$out\" || exit 1; exit 0" ];
}
`
	files := map[string]string{
		"default.nix": nix.String(),
		"mk.nix":      mk,
		"all.nix":     all,
		"builder.sh":  builderScript,
		"cacert.sh":   cacertScript,
		"iana-etc.sh": ianaEtcScript,
	}
	for name, content := range files {
		if err := writeIfChanged(filepath.Join(dir, name), []byte(content)); err != nil {
			return nil, nil, err
		}
	}
	return pkgs, aliases, nil
}

func versionOf(byName map[string]*DebPackage, n string) string {
	if p := byName[n]; p != nil && p.Version != "" {
		return p.Version
	}
	return "host"
}

// writeIfChanged writes data to name unless the file already holds it.
func writeIfChanged(name string, data []byte) error {
	if old, err := os.ReadFile(name); err == nil && bytes.Equal(old, data) {
		return nil
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return os.WriteFile(name, data, 0o644)
}

// nixString quotes s as a Nix string literal.
func nixString(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "${", `\${`, "\n", `\n`, "\r", `\r`, "\t", `\t`)
	return `"` + r.Replace(s) + `"`
}

// canonicalizer maps the paths of dpkg file lists to where the files really
// are. On a merged-/usr system the lists still say /lib/x86_64-linux-gnu/...
// while /lib is a symlink to usr/lib; copying the symlink /lib into a store
// path and then a file under it would fail, since the store path has no
// usr/lib. So every path is rewritten with its parent directory's symlinks
// resolved: /lib/x86_64-linux-gnu/libc.so.6 becomes
// usr/lib/x86_64-linux-gnu/libc.so.6, while the entry /lib itself stays a
// symlink (to usr/lib, which the store path then also holds).
type canonicalizer struct {
	root string
	dirs map[string]string // listed parent dir -> resolved path relative to root, or "" when outside
}

// path returns f relative to the root with its parent's symlinks resolved,
// and false when f is the root itself or resolves outside the root.
func (c *canonicalizer) path(f string) (string, bool) {
	f = filepath.Clean("/" + f)
	if f == "/" {
		return "", false
	}
	parent, base := filepath.Split(f)
	rp, ok := c.dirs[parent]
	if !ok {
		real, err := filepath.EvalSymlinks(filepath.Join(c.root, parent))
		if err == nil {
			if r, err := filepath.Rel(c.root, real); err == nil && r != ".." && !strings.HasPrefix(r, "../") {
				rp = r
				if rp == "." {
					rp = "/"
				}
			}
		}
		c.dirs[parent] = rp
	}
	if rp == "" {
		return "", false
	}
	if rp == "/" {
		return base, true
	}
	return rp + "/" + base, true
}
