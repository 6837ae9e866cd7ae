package gcsstore

import (
	"fmt"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nixery-go/nixery/internal/testutil"
	"github.com/nixery-go/nixery/layers"
)

// TestListPages: the listings follow nextPageToken, here with pages of two.
func TestListPages(t *testing.T) {
	g := testutil.StartFakeGCS(t)
	defer func(n int) { listPage = n }(listPage)
	listPage = 2
	ctx := t.Context()
	s, err := New(ctx, Options{Bucket: g.Bucket, EmulatorHost: g.Host, Prefix: "pages/"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[v1.Hash]bool{}
	for i := range 5 {
		h, err := layers.Put(ctx, s, []byte(fmt.Sprint("blob ", i)))
		if err != nil {
			t.Fatal(err)
		}
		want[h] = true
		if err := s.PutRecord(ctx, h.Hex, []byte("{}")); err != nil {
			t.Fatal(err)
		}
		if err := s.PutState(ctx, fmt.Sprint("times/server-", i), []byte("{}")); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[v1.Hash]bool{}
	if err := s.List(ctx, func(bi layers.BlobInfo) error { seen[bi.Digest] = true; return nil }); err != nil {
		t.Fatal(err)
	}
	records, states := 0, 0
	s.ListRecords(ctx, func(key string) error {
		if want[v1.Hash{Algorithm: "sha256", Hex: key}] {
			records++
		}
		return nil
	})
	s.ListState(ctx, "times/", func(string, time.Time) error { states++; return nil })
	if len(seen) != 5 || records != 5 || states != 5 {
		t.Errorf("with pages of 2: %d of 5 blobs, %d records, %d state objects", len(seen), records, states)
	}
}
