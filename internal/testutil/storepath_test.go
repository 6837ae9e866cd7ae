package testutil_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"testing/fstest"

	"github.com/nixery-go/nixery/closure"
	"github.com/nixery-go/nixery/internal/testutil"
)

func TestStorePath(t *testing.T) {
	// Pinned: tests elsewhere may write such paths out in full.
	if got, want := testutil.StorePath("glibc-2.36"), "/nix/store/yhda6wxmaral8azsy55xbqa9p6kg1svx-glibc-2.36"; got != want {
		t.Errorf("StorePath = %s, want %s", got, want)
	}
	seen := map[string]string{}
	for _, name := range []string{"a", "b", "glibc", "glibc-2.36", "hello", "x+y_z.1", "tool++-1_2.0_rc1"} {
		p := testutil.StorePath(name)
		if !closure.ValidStorePath(p) {
			t.Errorf("StorePath(%q) = %s: not a valid store path", name, p)
		}
		if p != testutil.StorePath(name) {
			t.Errorf("StorePath(%q) changes between calls", name)
		}
		if closure.Name(p) != name {
			t.Errorf("StorePath(%q) = %s: name %q", name, p, closure.Name(p))
		}
		hash := p[len(testutil.StoreDir)+1:][:32]
		if other, dup := seen[hash]; dup {
			t.Errorf("%q and %q have the same hash", name, other)
		}
		seen[hash] = name
	}
}

func TestStoreFS(t *testing.T) {
	fsys := testutil.StoreFS(map[string]fstest.MapFS{
		"hello":  {"bin/hello": {Data: []byte("hi"), Mode: 0o555}},
		"cacert": {"etc/ssl/certs/ca-bundle.crt": {Data: []byte("certs")}},
	})
	hello := testutil.StorePath("hello")[1:] + "/bin/hello"
	if b, err := fs.ReadFile(fsys, hello); err != nil || string(b) != "hi" {
		t.Errorf("%s: %q, %v", hello, b, err)
	}
	if err := fstest.TestFS(fsys, hello, testutil.StorePath("cacert")[1:]+"/etc/ssl/certs/ca-bundle.crt"); err != nil {
		t.Error(err)
	}
}

func TestStoreTree(t *testing.T) {
	s := testutil.NewStoreTree(t)
	tree := s.Add(t, "tree-1.0", fstest.MapFS{
		"bin/tool":     {Data: []byte("#!/bin/sh\n"), Mode: 0o755},
		"lib/data.txt": {Data: []byte("data"), Mode: 0o644},
		"lib/ro.txt":   {Data: []byte("ro")},
		"lib/empty":    {Mode: fs.ModeDir},
		"bin/link":     {Data: []byte("../lib/data.txt"), Mode: fs.ModeSymlink},
	})
	file := s.AddFile(t, "file-2.0", []byte("#!/bin/sh\n"), 0o555)
	link := s.AddSymlink(t, "link-3.0", tree)
	s.Seal(t)

	if got := s.All(); len(got) != 3 || !closure.ValidStorePath(got[0]) {
		t.Errorf("All = %v", got)
	}
	if s.Path("tree-1.0") != tree || s.Path("missing") != "" {
		t.Errorf("Path: %q %q", s.Path("tree-1.0"), s.Path("missing"))
	}
	for _, c := range []struct {
		path string
		mode fs.FileMode
	}{
		{tree, fs.ModeDir | 0o555},
		{tree + "/bin", fs.ModeDir | 0o555},
		{tree + "/bin/tool", 0o755},
		{tree + "/lib/data.txt", 0o644},
		{tree + "/lib/ro.txt", 0o444},
		{tree + "/lib/empty", fs.ModeDir | 0o555},
		{tree + "/bin/link", fs.ModeSymlink | 0o777},
		{file, 0o555},
		{link, fs.ModeSymlink | 0o777},
	} {
		fi, err := os.Lstat(filepath.Join(s.Root, c.path))
		if err != nil {
			t.Error(err)
			continue
		}
		if fi.Mode() != c.mode {
			t.Errorf("%s: mode %v, want %v", c.path, fi.Mode(), c.mode)
		}
	}
	if target, _ := os.Readlink(filepath.Join(s.Root, tree, "bin/link")); target != "../lib/data.txt" {
		t.Errorf("bin/link -> %q", target)
	}
	if b, _ := os.ReadFile(filepath.Join(s.Root, tree, "bin/link")); string(b) != "data" {
		t.Errorf("through bin/link: %q", b)
	}
}
