package images

import (
	"archive/tar"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"sort"
	"strings"

	"github.com/nixery-go/nixery/nix"
)

// forestDirs are the top-level directories of the symlink forest.
var forestDirs = []string{"bin", "etc", "lib", "sbin", "share"}

// maxForestDepth bounds how deep directories are merged; below it the first
// package's directory is linked whole.
const maxForestDepth = 12

// A node is a file, directory or symlink of the customisation layer.
type node struct {
	mode     int64 // permission bits (with sticky bit for /tmp)
	typ      byte  // tar.TypeDir, tar.TypeReg or tar.TypeSymlink
	target   string
	data     []byte
	children map[string]*node
}

func dir(mode int64) *node { return &node{typ: tar.TypeDir, mode: mode, children: map[string]*node{}} }

func (n *node) mkdir(name string) *node {
	c, ok := n.children[name]
	if !ok || c.typ != tar.TypeDir {
		c = dir(0o755)
		n.children[name] = c
	}
	return c
}

// customisation builds the tree of the customisation layer for pkgs, reading
// the store through root (an fs.FS of "/": store paths are looked up without
// their leading slash).
//
// The layer is a symlink forest, the way nixpkgs' buildEnv makes one:
// /bin, /etc, /lib, /sbin and /share are real directories; each entry in them
// is a symlink into the package that provides it. When several packages
// provide the same directory (share/man, say), that directory is made real
// too and merged one level down, recursively; when they provide the same
// file, the first package wins, packages being ordered by attribute name and
// then store path. So for coreutils and moreutils, which both have bin/,
// /bin/ls links to coreutils' bin/ls and /bin/sponge to moreutils'
// bin/sponge.
//
// On top of the forest the layer holds /etc/passwd and /etc/group (root and
// nobody), /etc/nsswitch.conf if no package provides one, /tmp with mode 1777
// and /usr/bin/env, a symlink to coreutils' env when an image has it.
func customisation(root fs.FS, pkgs []nix.Package) (*node, error) {
	pkgs = slices.Clone(pkgs)
	sort.SliceStable(pkgs, func(i, j int) bool {
		if pkgs[i].Attr != pkgs[j].Attr {
			return pkgs[i].Attr < pkgs[j].Attr
		}
		return pkgs[i].Path < pkgs[j].Path
	})
	pkgs = slices.CompactFunc(pkgs, func(a, b nix.Package) bool { return a.Path == b.Path })
	top := dir(0o755)
	for _, d := range forestDirs {
		var srcs []string
		for _, p := range pkgs {
			src := strings.TrimPrefix(path.Join(p.Path, d), "/")
			if isDir(root, src) {
				srcs = append(srcs, src)
			}
		}
		if len(srcs) == 0 {
			continue
		}
		if err := merge(root, top.mkdir(d), srcs, 0); err != nil {
			return nil, err
		}
	}

	etc := top.mkdir("etc")
	etc.children["passwd"] = &node{typ: tar.TypeReg, mode: 0o644, data: []byte(
		"root:x:0:0:System administrator:/root:/bin/sh\n" +
			"nobody:x:65534:65534:Unprivileged account:/var/empty:/bin/false\n")}
	etc.children["group"] = &node{typ: tar.TypeReg, mode: 0o644, data: []byte(
		"root:x:0:\n" +
			"nogroup:x:65534:\n")}
	if _, ok := etc.children["nsswitch.conf"]; !ok {
		etc.children["nsswitch.conf"] = &node{typ: tar.TypeReg, mode: 0o644, data: []byte(
			"passwd: files\ngroup: files\nhosts: files dns\n")}
	}
	top.children["tmp"] = dir(0o1777)
	top.mkdir("root").mode = 0o700

	// /usr/bin/env: coreutils' env, or whatever /bin/env links to.
	env := ""
	for _, p := range pkgs {
		if strings.EqualFold(p.Attr, "coreutils") && isFile(root, strings.TrimPrefix(path.Join(p.Path, "bin/env"), "/")) {
			env = path.Join(p.Path, "bin/env")
			break
		}
	}
	if env == "" {
		if bin := top.children["bin"]; bin != nil && bin.typ == tar.TypeDir {
			if e := bin.children["env"]; e != nil && e.typ == tar.TypeSymlink {
				env = e.target
			}
		}
	}
	if env != "" {
		top.mkdir("usr").mkdir("bin").children["env"] = &node{typ: tar.TypeSymlink, mode: 0o777, target: env}
	}
	return top, nil
}

// merge fills d with links to the entries of the directories srcs (store
// directories without a leading slash), in priority order.
func merge(root fs.FS, d *node, srcs []string, depth int) error {
	type entry struct {
		src   string // the directory providing it
		isDir bool
	}
	byName := map[string][]entry{}
	for _, src := range srcs {
		ents, err := fs.ReadDir(root, src)
		if err != nil {
			return fmt.Errorf("images: customisation layer: %w", err)
		}
		for _, e := range ents {
			d := e.IsDir()
			if e.Type()&fs.ModeSymlink != 0 {
				// Follows the link where root can (os.DirFS can).
				d = isDir(root, path.Join(src, e.Name()))
			}
			byName[e.Name()] = append(byName[e.Name()], entry{src, d})
		}
	}
	for name, ents := range byName {
		first := ents[0]
		var dirs []string
		for _, e := range ents {
			if e.isDir {
				dirs = append(dirs, path.Join(e.src, name))
			}
		}
		if first.isDir && len(dirs) > 1 && depth < maxForestDepth {
			if err := merge(root, d.mkdir(name), dirs, depth+1); err != nil {
				return err
			}
			continue
		}
		d.children[name] = &node{typ: tar.TypeSymlink, mode: 0o777, target: "/" + path.Join(first.src, name)}
	}
	return nil
}

func isDir(root fs.FS, name string) bool {
	fi, err := fs.Stat(root, name)
	return err == nil && fi.IsDir()
}

func isFile(root fs.FS, name string) bool {
	fi, err := fs.Stat(root, name)
	return err == nil && !fi.IsDir()
}

// writeTree writes n's children to tw, sorted by name, parents before their
// contents, with fixed owners and times.
func writeTree(tw *tar.Writer, prefix string, n *node) error {
	names := make([]string, 0, len(n.children))
	for name := range n.children {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		c := n.children[name]
		hdr := &tar.Header{
			Name:     prefix + name,
			Typeflag: c.typ,
			Mode:     c.mode,
			ModTime:  Created,
		}
		switch c.typ {
		case tar.TypeDir:
			hdr.Name += "/"
		case tar.TypeSymlink:
			hdr.Linkname = c.target
		case tar.TypeReg:
			hdr.Size = int64(len(c.data))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if c.typ == tar.TypeReg {
			if _, err := tw.Write(c.data); err != nil {
				return err
			}
		}
		if c.typ == tar.TypeDir {
			if err := writeTree(tw, hdr.Name, c); err != nil {
				return err
			}
		}
	}
	return nil
}
