package s3store_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nixery-go/nixery/internal/testutil"
	"github.com/nixery-go/nixery/layers"
	"github.com/nixery-go/nixery/layers/s3store"
)

func digest(b []byte) v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", sha256.Sum256(b))}
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// newStore starts a SeaweedFS cluster and returns a store on it, with
// 5 MiB parts, under a prefix of the test's own.
func newStore(t *testing.T, w *testutil.SeaweedFS, prefix string) *s3store.Store {
	t.Helper()
	s, err := s3store.New(t.Context(), s3store.Options{
		Bucket: w.Bucket, Endpoint: w.Endpoint, Region: w.Region, Prefix: prefix, PartSize: 5 << 20,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func readAll(t *testing.T, s layers.BlobStore, h v1.Hash) []byte {
	t.Helper()
	rc, err := s.Open(t.Context(), h)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func keys(t *testing.T, s *s3store.Store, prefix string) []string {
	t.Helper()
	var ks []string
	p := s3.NewListObjectsV2Paginator(s.Client(), &s3.ListObjectsV2Input{Bucket: aws.String(s.Bucket()), Prefix: aws.String(prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range page.Contents {
			ks = append(ks, *o.Key)
		}
	}
	return ks
}

func uploads(t *testing.T, s *s3store.Store, prefix string) int {
	t.Helper()
	o, err := s.Client().ListMultipartUploads(t.Context(), &s3.ListMultipartUploadsInput{Bucket: aws.String(s.Bucket()), Prefix: aws.String(prefix)})
	if err != nil {
		t.Fatal(err)
	}
	return len(o.Uploads)
}

// TestS3Store is the blob-store conformance of the S3 store on a real
// SeaweedFS cluster: what FSStore promises, S3 keeps.
func TestS3Store(t *testing.T) {
	w := testutil.StartSeaweedFS(t)
	w.SetEnv(t)

	t.Run("PutStatOpenListDelete", func(t *testing.T) {
		ctx := t.Context()
		s := newStore(t, w, "basic/")
		small := []byte("hello, blob")
		h, err := layers.Put(ctx, s, small)
		if err != nil {
			t.Fatal(err)
		}
		if n, err := s.Stat(ctx, h); err != nil || n != int64(len(small)) {
			t.Errorf("Stat = %d, %v", n, err)
		}
		if got := readAll(t, s, h); !bytes.Equal(got, small) {
			t.Errorf("Open: %q", got)
		}
		big := randomBytes(t, 12<<20+123) // three parts
		bw, err := s.Create(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for off := 0; off < len(big); off += 100_000 {
			bw.Write(big[off:min(off+100_000, len(big))])
		}
		if d, ok := bw.(layers.Digester); !ok || d.Digest() != digest(big) {
			t.Errorf("the writer is no Digester, or its digest is wrong")
		}
		hb := digest(big)
		if err := bw.Commit(hb); err != nil {
			t.Fatal(err)
		}
		if got := readAll(t, s, hb); !bytes.Equal(got, big) {
			t.Errorf("Open of the multipart blob: %d bytes, not what was written", len(got))
		}
		// Seek and read back parts, as http.ServeContent does for Range.
		rc, _ := s.Open(ctx, hb)
		if end, err := rc.Seek(0, io.SeekEnd); err != nil || end != int64(len(big)) {
			t.Errorf("Seek to the end: %d, %v", end, err)
		}
		rc.Seek(7<<20, io.SeekStart)
		part := make([]byte, 1000)
		if _, err := io.ReadFull(rc, part); err != nil || !bytes.Equal(part, big[7<<20:7<<20+1000]) {
			t.Errorf("read at 7 MiB: %v", err)
		}
		rc.Close()
		seen := map[v1.Hash]layers.BlobInfo{}
		if err := s.List(ctx, func(bi layers.BlobInfo) error { seen[bi.Digest] = bi; return nil }); err != nil {
			t.Fatal(err)
		}
		if len(seen) != 2 || seen[hb].Size != int64(len(big)) || time.Since(seen[h].ModTime) > time.Hour {
			t.Errorf("List = %v", seen)
		}
		if err := s.Delete(ctx, h); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Stat(ctx, h); !errors.Is(err, layers.ErrBlobUnknown) {
			t.Errorf("Stat after Delete: %v", err)
		}
		if err := s.Delete(ctx, h); !errors.Is(err, layers.ErrBlobUnknown) {
			t.Errorf("second Delete: %v", err)
		}
		if _, err := s.Open(ctx, h); !errors.Is(err, layers.ErrBlobUnknown) {
			t.Errorf("Open after Delete: %v", err)
		}
		if ks := keys(t, s, "basic/tmp/"); len(ks) != 0 || uploads(t, s, "basic/") != 0 {
			t.Errorf("temporary objects left: %v, %d uploads", ks, uploads(t, s, "basic/"))
		}
		bad := v1.Hash{Algorithm: "sha256", Hex: "../../etc"}
		if _, err := s.Stat(ctx, bad); !errors.Is(err, layers.ErrInvalidDigest) {
			t.Errorf("Stat of a bad digest: %v", err)
		}
	})

	t.Run("PartialNeverVisible", func(t *testing.T) {
		ctx := t.Context()
		s := newStore(t, w, "partial/")
		data := randomBytes(t, 11<<20)
		h := digest(data)
		bw, _ := s.Create(ctx)
		bw.Write(data[:10<<20]) // two parts uploaded, or on their way
		if _, err := s.Stat(ctx, h); !errors.Is(err, layers.ErrBlobUnknown) {
			t.Errorf("Stat during the upload: %v", err)
		}
		if ks := keys(t, s, "partial/blobs/"); len(ks) != 0 {
			t.Errorf("blobs visible during the upload: %v", ks)
		}
		bw.Write(data[10<<20:])
		// A wrong digest: nothing is stored, nothing is left behind.
		wrong := digest([]byte("something else"))
		if err := bw.Commit(wrong); !errors.Is(err, layers.ErrDigestMismatch) {
			t.Errorf("Commit with a wrong digest: %v", err)
		}
		for _, d := range []v1.Hash{h, wrong} {
			if _, err := s.Stat(ctx, d); !errors.Is(err, layers.ErrBlobUnknown) {
				t.Errorf("Stat of %s after a failed commit: %v", d, err)
			}
		}
		// Cancel mid-upload aborts the multipart upload.
		bw, _ = s.Create(ctx)
		bw.Write(data)
		if err := bw.Cancel(); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Stat(ctx, h); !errors.Is(err, layers.ErrBlobUnknown) {
			t.Errorf("Stat after Cancel: %v", err)
		}
		if n := uploads(t, s, "partial/"); n != 0 {
			t.Errorf("%d multipart uploads left after a mismatch and a cancel", n)
		}
		if ks := keys(t, s, "partial/"); len(ks) != 0 {
			t.Errorf("objects left after a mismatch and a cancel: %v", ks)
		}
	})

	t.Run("DamagedDetected", func(t *testing.T) {
		ctx := t.Context()
		s := newStore(t, w, "damaged/")
		data := randomBytes(t, 6<<20)
		h, err := layers.Put(ctx, s, data)
		if err != nil {
			t.Fatal(err)
		}
		v := layers.NewVerifier(s)
		rc, n, err := v.Open(ctx, h)
		if err != nil || n != int64(len(data)) {
			t.Fatalf("Verifier.Open of a good blob: %d, %v", n, err)
		}
		rc.Close()
		// Damage the object behind the store's back: same size, other
		// bytes, a new ETag.
		bad := bytes.Clone(data)
		bad[12345] ^= 0xff
		if _, err := s.Client().PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(s.Bucket()), Key: aws.String(s.Key(h)), Body: bytes.NewReader(bad)}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := v.Open(ctx, h); !errors.Is(err, layers.ErrDigestMismatch) {
			t.Errorf("Verifier.Open of a damaged blob: %v", err)
		}
		if err := v.Check(ctx, h, nil); !errors.Is(err, layers.ErrDigestMismatch) {
			t.Errorf("Verifier.Check (the scrub) of a damaged blob: %v", err)
		}
		if err := layers.Quarantine(ctx, s, h); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Stat(ctx, h); !errors.Is(err, layers.ErrBlobUnknown) {
			t.Errorf("Stat after Quarantine: %v", err)
		}
		if ks := keys(t, s, "damaged/quarantine/"); len(ks) != 1 || !strings.Contains(ks[0], h.Hex) {
			t.Errorf("quarantine holds %v", ks)
		}
		// Put replaces a damaged blob.
		if _, err := s.Client().PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(s.Bucket()), Key: aws.String(s.Key(h)), Body: bytes.NewReader(bad)}); err != nil {
			t.Fatal(err)
		}
		if _, err := layers.Put(ctx, s, data); err != nil {
			t.Fatal(err)
		}
		if err := v.Check(ctx, h, nil); err != nil {
			t.Errorf("after Put replaced the damaged blob: %v", err)
		}
	})

	t.Run("PresignedURL", func(t *testing.T) {
		ctx := t.Context()
		s := newStore(t, w, "url/")
		data := randomBytes(t, 1<<20)
		h, err := layers.Put(ctx, s, data)
		if err != nil {
			t.Fatal(err)
		}
		u, err := s.URL(ctx, h, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
		req.Header.Set("Range", "bytes=100-199")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, data[100:200]) {
			t.Errorf("GET of the presigned URL with Range: %s, %d bytes", resp.Status, len(body))
		}
		short, _ := s.URL(ctx, h, time.Second)
		time.Sleep(2500 * time.Millisecond)
		resp, err = http.Get(short)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("GET of an expired URL: %s, want 403", resp.Status)
		}
	})

	t.Run("SpoolFull", func(t *testing.T) {
		// A blob larger than one part is spooled to local disk: with
		// the spool's disk full, the write fails with the reason,
		// nothing reaches the bucket, and the space comes back.
		ctx := t.Context()
		dir := t.TempDir()
		if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", dir).CombinedOutput(); err != nil {
			t.Fatalf("mount a 12 MiB tmpfs for the spool (the test needs root): %v: %s", err, out)
		}
		t.Cleanup(func() { exec.Command("umount", dir).Run() })
		s, err := s3store.New(ctx, s3store.Options{
			Bucket: w.Bucket, Endpoint: w.Endpoint, Region: w.Region, Prefix: "spool/", PartSize: 5 << 20, SpoolDir: dir,
		})
		if err != nil {
			t.Fatal(err)
		}
		data := randomBytes(t, 20<<20)
		bw, _ := s.Create(ctx)
		var werr error
		for off := 0; off < len(data) && werr == nil; off += 1 << 20 {
			_, werr = bw.Write(data[off : off+1<<20])
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Fatalf("the spool file has a name in %s: %v", dir, ents)
			}
		}
		if werr == nil || !strings.Contains(werr.Error(), "no space left on device") || !strings.Contains(werr.Error(), "spool") {
			t.Errorf("Write of 20 MiB to a 12 MiB spool: %v, want a spool error saying no space", werr)
		}
		if err := bw.Commit(digest(data)); err == nil {
			t.Error("Commit after a failed write succeeded")
		}
		if ks := keys(t, s, "spool/"); len(ks) != 0 || uploads(t, s, "spool/") != 0 {
			t.Errorf("after a failed spool the bucket holds %v and %d uploads", ks, uploads(t, s, "spool/"))
		}
		// The space is back: a blob that fits goes through.
		h, err := layers.Put(ctx, s, data[:10<<20])
		if err != nil {
			t.Fatalf("Put of 10 MiB after the failure: %v", err)
		}
		if !bytes.Equal(readAll(t, s, h), data[:10<<20]) {
			t.Error("the 10 MiB blob reads back wrong")
		}
	})

	t.Run("KilledUploadsCleaned", func(t *testing.T) {
		// What a killed replica leaves: a multipart upload started on a
		// blob's key and never completed (invisible), and, from earlier
		// versions, a tmp/ object. The next store to start past
		// TempAge aborts and removes them.
		ctx := t.Context()
		s := newStore(t, w, "killed/")
		data := randomBytes(t, 5<<20)
		key := s.Key(digest(data))
		up, err := s.Client().CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(s.Bucket()), Key: &key})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Client().UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String(s.Bucket()), Key: &key, UploadId: up.UploadId,
			PartNumber: aws.Int32(1), Body: bytes.NewReader(data), ContentLength: aws.Int64(int64(len(data)))}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Client().PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(s.Bucket()), Key: aws.String("killed/tmp/0123"), Body: bytes.NewReader(data[:100])}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Stat(ctx, digest(data)); !errors.Is(err, layers.ErrBlobUnknown) {
			t.Errorf("Stat of an uncompleted upload: %v", err)
		}
		if n := uploads(t, s, "killed/"); n != 1 {
			t.Fatalf("%d uploads before the cleanup, want 1", n)
		}
		// A store started now with the default age keeps them (another
		// replica may be writing); one with a short age removes them.
		newStore(t, w, "killed/")
		if n := uploads(t, s, "killed/"); n != 1 {
			t.Errorf("a fresh upload was aborted by a store with the default TempAge: %d left", n)
		}
		time.Sleep(1100 * time.Millisecond)
		if _, err := s3store.New(ctx, s3store.Options{Bucket: w.Bucket, Endpoint: w.Endpoint, Region: w.Region, Prefix: "killed/", TempAge: time.Second}); err != nil {
			t.Fatal(err)
		}
		if n := uploads(t, s, "killed/"); n != 0 {
			t.Errorf("%d uploads left after the cleanup", n)
		}
		if ks := keys(t, s, "killed/"); len(ks) != 0 {
			t.Errorf("objects left after the cleanup: %v", ks)
		}
	})
}
