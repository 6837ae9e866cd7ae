package testutil

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNotImportedByProduction: no production package depends on testutil;
// only tests (whose imports go list -deps leaves out) and the benchmark
// packages may.
func TestNotImportedByProduction(t *testing.T) {
	RequireTools(t, "go")
	dir, err := ModuleDir()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Deps " "}}`, "./...")
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	benchmarks := []string{Module + "/benchmarks", Module + "/layers/layerbench", Module + "/internal/testutil"}
	checked := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg := fields[0]
		if hasPrefix(pkg, benchmarks) {
			continue
		}
		checked++
		for _, dep := range fields[1:] {
			if strings.HasPrefix(dep, Module+"/internal/testutil") {
				t.Errorf("production package %s depends on %s", pkg, dep)
			}
		}
	}
	if checked < 5 {
		t.Errorf("checked %d production packages; go list said:\n%s", checked, out)
	}
}

// hasPrefix reports whether pkg is one of the packages or below one.
func hasPrefix(pkg string, parents []string) bool {
	for _, p := range parents {
		if pkg == p || strings.HasPrefix(pkg, p+"/") {
			return true
		}
	}
	return false
}
