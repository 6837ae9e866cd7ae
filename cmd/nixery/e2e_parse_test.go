package main

import (
	"os"
	"slices"
	"testing"
)

func TestParseConformance(t *testing.T) {
	for _, tc := range []struct {
		file               string
		status             string
		pass, fail, errors int
		blobGet, manByTag  []string
	}{
		{"conformance-pass.txt", "Pass", 14, 0, 0, []string{"Pass", "Pass", "Pass"}, []string{"Pass"}},
		{"conformance-fail.txt", "FAIL", 10, 2, 0, []string{"Pass", "FAIL"}, []string{"Pass"}},
	} {
		out, err := os.ReadFile("testdata/e2e/" + tc.file)
		if err != nil {
			t.Fatal(err)
		}
		s, err := parseConformance(string(out))
		if err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		if s.status != tc.status || s.pass != tc.pass || s.fail != tc.fail || s.errors != tc.errors {
			t.Errorf("%s: status %q pass %d fail %d errors %d; want %q %d %d %d", tc.file, s.status, s.pass, s.fail, s.errors, tc.status, tc.pass, tc.fail, tc.errors)
		}
		if got := s.results["read-only/pull/blob-get"]; !slices.Equal(got, tc.blobGet) {
			t.Errorf("%s: blob-get results %v, want %v", tc.file, got, tc.blobGet)
		}
		if got := s.results["read-only/pull/manifest-by-tag"]; !slices.Equal(got, tc.manByTag) {
			t.Errorf("%s: manifest-by-tag results %v, want %v", tc.file, got, tc.manByTag)
		}
	}
	for _, bad := range []string{"", "panic: something\n", "OCI Conformance Test: Pass\n"} {
		if _, err := parseConformance(bad); err == nil {
			t.Errorf("parseConformance(%q) succeeded", bad)
		}
	}
}
