package corpus

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// ErrSyntax is wrapped by every error about a malformed dpkg database.
var ErrSyntax = errors.New("corpus: malformed dpkg database")

// DebPackage is one installed Debian package as the dpkg database records it.
type DebPackage struct {
	// Name is the package name, "libc6".
	Name string
	// Arch is the package architecture, "amd64" or "all".
	Arch string
	// Version is the Debian version, "2.36-9+deb12u4".
	Version string
	// InstalledSize is dpkg's estimate of the unpacked size in bytes
	// (Installed-Size is recorded in KiB).
	InstalledSize int64
	// Depends lists the Pre-Depends and then the Depends relations, each a
	// group of alternatives ("a | b" is one group of two).
	Depends [][]string
	// Provides lists the virtual package names this package provides.
	Provides []string
	// Files lists the absolute paths of the package's files, directories
	// included, in the order of its .list file. It is empty until
	// [ReadDatabase] loads the lists.
	Files []string
}

// ParseStatus parses a dpkg status file (/var/lib/dpkg/status) and returns
// the packages whose status is "installed", sorted by name and then
// architecture. Version constraints, architecture qualifiers (":any") and
// architecture or profile restrictions ("[amd64]", "<!nocheck>") are
// dropped from relations: the corpus only needs names.
func ParseStatus(r io.Reader) ([]DebPackage, error) {
	var out []DebPackage
	flush := func(fields map[string]string, line int) error {
		name := fields["Package"]
		if name == "" {
			return fmt.Errorf("%w: stanza ending at line %d has no Package field", ErrSyntax, line)
		}
		st := strings.Fields(fields["Status"])
		if len(st) != 3 || st[2] != "installed" {
			return nil
		}
		p := DebPackage{Name: name, Arch: fields["Architecture"], Version: fields["Version"]}
		if s := fields["Installed-Size"]; s != "" {
			kib, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
			if err != nil || kib < 0 {
				return fmt.Errorf("%w: package %s: bad Installed-Size %q", ErrSyntax, name, s)
			}
			p.InstalledSize = kib * 1024
		}
		for _, f := range []string{"Pre-Depends", "Depends"} {
			groups, err := parseRelations(fields[f])
			if err != nil {
				return fmt.Errorf("%w: package %s: %s: %v", ErrSyntax, name, f, err)
			}
			p.Depends = append(p.Depends, groups...)
		}
		prov, err := parseRelations(fields["Provides"])
		if err != nil {
			return fmt.Errorf("%w: package %s: Provides: %v", ErrSyntax, name, err)
		}
		for _, g := range prov {
			if len(g) != 1 {
				return fmt.Errorf("%w: package %s: alternatives in Provides", ErrSyntax, name)
			}
			p.Provides = append(p.Provides, g[0])
		}
		out = append(out, p)
		return nil
	}
	if err := stanzas(r, flush); err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].Arch < out[j].Arch
	})
	return out, nil
}

// parseRelations parses a relationship field such as
// "libc6 (>= 2.34), perl:any, default-mta | mail-transport-agent" into
// groups of alternative package names.
func parseRelations(s string) ([][]string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	var groups [][]string
	for _, g := range strings.Split(s, ",") {
		var alts []string
		for _, a := range strings.Split(g, "|") {
			name, err := relationName(a)
			if err != nil {
				return nil, err
			}
			alts = append(alts, name)
		}
		groups = append(groups, alts)
	}
	return groups, nil
}

// relationName returns the package name of one relation, "perl:any (>= 5)"
// giving "perl".
func relationName(a string) (string, error) {
	a = strings.TrimSpace(a)
	end := strings.IndexAny(a, " \t\n([<")
	if end < 0 {
		end = len(a)
	}
	name := a[:end]
	if i := strings.IndexByte(name, ':'); i >= 0 {
		name = name[:i]
	}
	if !validDebName(name) {
		return "", fmt.Errorf("bad package name in relation %q", a)
	}
	return name, nil
}

// validDebName reports whether s follows Debian policy 5.6.1: lower-case
// letters, digits, '+', '-' and '.', at least two characters, starting
// with a letter or digit.
func validDebName(s string) bool {
	if len(s) < 2 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z' || c >= '0' && c <= '9':
		case i > 0 && (c == '+' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return true
}

// ReadDatabase reads the dpkg database in dir (normally /var/lib/dpkg): the
// status file and, for each installed package, its file list
// info/<name>.list or info/<name>:<arch>.list. A package of which several
// architectures are installed is kept once, in the architecture that sorts
// first, so that names stay unique. A missing list is an error.
func ReadDatabase(dir string) ([]DebPackage, error) {
	f, err := os.Open(filepath.Join(dir, "status"))
	if err != nil {
		return nil, fmt.Errorf("corpus: reading dpkg database: %w", err)
	}
	pkgs, err := ParseStatus(f)
	f.Close()
	if err != nil {
		return nil, err
	}
	out := pkgs[:0]
	for i, p := range pkgs {
		if i > 0 && pkgs[i-1].Name == p.Name {
			continue
		}
		out = append(out, p)
	}
	pkgs = out
	for i := range pkgs {
		p := &pkgs[i]
		var data []byte
		var err error
		for _, n := range []string{p.Name + ":" + p.Arch + ".list", p.Name + ".list"} {
			data, err = os.ReadFile(filepath.Join(dir, "info", n))
			if err == nil || !errors.Is(err, os.ErrNotExist) {
				break
			}
		}
		if err != nil {
			return nil, fmt.Errorf("corpus: file list of %s: %w", p.Name, err)
		}
		p.Files = parseList(data)
	}
	return pkgs, nil
}

// parseList returns the absolute paths in a dpkg .list file, without the
// root entry "/.".
func parseList(data []byte) []string {
	var files []string
	for _, l := range bytes.Split(data, []byte("\n")) {
		s := string(l)
		if s == "" || s == "/." || s[0] != '/' {
			continue
		}
		files = append(files, s)
	}
	return files
}

// stanzas reads r as deb822 stanzas (dpkg's status file, an archive's
// Packages index): "Field: value" lines, continuation lines that start with
// a space or a tab, stanzas separated by empty lines. It calls fn with each
// stanza's fields and the number of the line it ends on.
func stanzas(r io.Reader, fn func(fields map[string]string, line int) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 16*1024*1024)
	fields := map[string]string{}
	var last string
	line := 0
	flush := func() error {
		defer func() { fields = map[string]string{}; last = "" }()
		if len(fields) == 0 {
			return nil
		}
		return fn(fields, line)
	}
	for sc.Scan() {
		line++
		text := strings.TrimRight(sc.Text(), " \t\r")
		switch {
		case text == "":
			if err := flush(); err != nil {
				return err
			}
		case text[0] == ' ' || text[0] == '\t':
			if last == "" {
				return fmt.Errorf("%w: line %d: continuation line without a field", ErrSyntax, line)
			}
			fields[last] += "\n" + strings.TrimSpace(text)
		default:
			k, v, ok := strings.Cut(text, ":")
			if !ok || k == "" {
				return fmt.Errorf("%w: line %d: expected \"Field: value\"", ErrSyntax, line)
			}
			last = k
			fields[k] = strings.TrimSpace(v)
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return flush()
}
