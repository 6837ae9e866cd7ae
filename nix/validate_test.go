package nix

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// hostileNames must all be rejected by ValidateName.
var hostileNames = []string{
	`${builtins.readFile "/etc/passwd"}`,
	`${toString (import /etc/passwd)}`,
	`a"b`,
	`../x`,
	`/etc/passwd`,
	`x;y`,
	`x y`,
	`a b`,
	`''`,
	`''${x}`,
	`"`,
	`\`,
	`a\nb`,
	"a\nb",
	"a\x00b",
	"a\tb",
	strings.Repeat("a", MaxNameLength+1),
	strings.Repeat("a.", 100) + "a",
	"ünïcödé",
	"café",
	"Ｃurl", // fullwidth C
	"",
	".",
	"..",
	"a..b",
	"a.",
	".a",
	"-x",
	"'x",
	"a.-b",
	"a/b",
	"a:b",
	"a,b",
	"a+b",
	"a=b",
	"(x)",
	"[x]",
	"{x}",
	"x#y",
	"x$y",
	"x@y",
	"x|y",
	"x&y",
	"x*y",
	"<nixpkgs>",
	"~x",
	"x!",
	"x%y",
}

func TestValidateNameRejectsHostile(t *testing.T) {
	for _, name := range hostileNames {
		err := ValidateName(name)
		var inv *InvalidNameError
		if !errors.As(err, &inv) {
			t.Errorf("ValidateName(%q) = %v, want *InvalidNameError", name, err)
			continue
		}
		if inv.Name != name || inv.Reason == "" {
			t.Errorf("ValidateName(%q) = %+v", name, inv)
		}
		if len(err.Error()) > 300 {
			t.Errorf("message for a %d-byte name is %d bytes long", len(name), len(err.Error()))
		}
	}
}

func TestValidateNameAccepts(t *testing.T) {
	for _, name := range []string{
		"curl", "bashInteractive", "iana-etc", "python3Packages.numpy", "_7zip", "7zip",
		"gitAndTools.git", "a'", "foo_bar-baz'", "x.y.z", strings.Repeat("a", MaxNameLength),
	} {
		if err := ValidateName(name); err != nil {
			t.Errorf("ValidateName(%q) = %v", name, err)
		}
	}
}

// TestBuildRejectsHostileBeforeNix shows that a hostile name, alone or among
// good ones, stops Build before any Nix process starts: the names never
// reach Nix, let alone as code.
func TestBuildRejectsHostileBeforeNix(t *testing.T) {
	b, runs := countingBuilder(t, testBundled(t), Options{})
	b.run = func(ctx context.Context, c command) (output, error) {
		runs.Add(1)
		return output{}, errors.New("nix must not run")
	}
	for _, name := range hostileNames {
		for _, pkgs := range [][]string{{name}, {"curl", name}, {name, "hello"}} {
			_, err := b.Build(context.Background(), Request{Packages: pkgs})
			var inv *InvalidNameError
			if !errors.As(err, &inv) || inv.Name != name {
				t.Errorf("Build(%q) = %v, want *InvalidNameError for %q", pkgs, err, name)
			}
		}
	}
	if n := runs.Load(); n != 0 {
		t.Fatalf("Nix ran %d times for hostile names", n)
	}
}

// TestNamesAreData runs names that pass the grammar but are Nix keywords or
// builtins through the real resolver: they are looked up as attribute
// names, never evaluated.
func TestNamesAreData(t *testing.T) {
	requireNix(t)
	b, _ := countingBuilder(t, testBundled(t), Options{})
	names := []string{"builtins", "import", "let", "rec", "throw", "abort", "true", "null", "x'y", "builtins.readFile", "__curPos"}
	_, err := b.Build(context.Background(), Request{Packages: names})
	var unknown *UnknownPackagesError
	if !errors.As(err, &unknown) || len(unknown.Names) != len(names) {
		t.Fatalf("err = %v, want all %d names unknown", err, len(names))
	}
}

func FuzzValidateName(f *testing.F) {
	for _, s := range hostileNames {
		f.Add(s)
	}
	for _, s := range []string{"curl", "python3Packages.numpy", "_7zip", "a'b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		err := ValidateName(name)
		if err != nil {
			var inv *InvalidNameError
			if !errors.As(err, &inv) {
				t.Fatalf("error %v is not an *InvalidNameError", err)
			}
			return
		}
		// Accepted names contain nothing Nix could read as syntax.
		if len(name) == 0 || len(name) > MaxNameLength {
			t.Fatalf("accepted %q of length %d", name, len(name))
		}
		for _, comp := range strings.Split(name, ".") {
			if comp == "" || comp[0] == '-' || comp[0] == '\'' {
				t.Fatalf("accepted %q with component %q", name, comp)
			}
			for _, c := range []byte(comp) {
				ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '\''
				if !ok {
					t.Fatalf("accepted %q with byte %q", name, c)
				}
			}
		}
	})
}
