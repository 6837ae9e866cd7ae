package s3store_test

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/nixery-go/nixery/internal/testutil"
	"github.com/nixery-go/nixery/internal/testutil/objstoretest"
	"github.com/nixery-go/nixery/layers"
	"github.com/nixery-go/nixery/layers/s3store"
)

// newStore returns a store on the SeaweedFS cluster w, with 5 MiB parts,
// under a prefix of the test's own, spooling to spoolDir ("" for the
// default).
func newStore(t *testing.T, w *testutil.SeaweedFS, prefix, spoolDir string) *s3store.Store {
	t.Helper()
	s, err := s3store.New(t.Context(), s3store.Options{
		Bucket: w.Bucket, Endpoint: w.Endpoint, Region: w.Region, Prefix: prefix, PartSize: 5 << 20, SpoolDir: spoolDir,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// keys lists the keys under prefix straight from the bucket of s, not
// through the store.
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

// uploads counts the multipart uploads under prefix not completed or
// aborted yet.
func uploads(t *testing.T, s *s3store.Store, prefix string) int {
	t.Helper()
	o, err := s.Client().ListMultipartUploads(t.Context(), &s3.ListMultipartUploadsInput{Bucket: aws.String(s.Bucket()), Prefix: aws.String(prefix)})
	if err != nil {
		t.Fatal(err)
	}
	return len(o.Uploads)
}

// TestS3Store is the conformance of the S3 store on a real SeaweedFS
// cluster (objstoretest.Run: what FSStore promises, S3 keeps), and what
// only S3 has: presigned URLs that expire, multipart uploads that a killed
// replica leaves.
func TestS3Store(t *testing.T) {
	w := testutil.StartSeaweedFS(t)
	w.SetEnv(t)
	raw := newStore(t, w, "", "") // for its client, to reach the bucket behind the stores' back

	// The conformance of every object-store backend.
	objstoretest.Run(t, objstoretest.Backend{
		New: func(t *testing.T, prefix, spoolDir string) objstoretest.Store {
			return newStore(t, w, prefix, spoolDir)
		},
		Keys:    func(t *testing.T, prefix string) []string { return keys(t, raw, prefix) },
		Uploads: func(t *testing.T, prefix string) int { return uploads(t, raw, prefix) },
		Put: func(t *testing.T, key string, data []byte) {
			t.Helper()
			if _, err := raw.Client().PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String(raw.Bucket()), Key: aws.String(key), Body: bytes.NewReader(data)}); err != nil {
				t.Fatal(err)
			}
		},
		Get: func(t *testing.T, key string) []byte {
			t.Helper()
			o, err := raw.Client().GetObject(t.Context(), &s3.GetObjectInput{Bucket: aws.String(raw.Bucket()), Key: aws.String(key)})
			if err != nil {
				t.Fatal(err)
			}
			defer o.Body.Close()
			b, err := io.ReadAll(o.Body)
			if err != nil || int64(len(b)) != aws.ToInt64(o.ContentLength) {
				t.Fatalf("raw get of %s: %d of %d bytes, %v", key, len(b), aws.ToInt64(o.ContentLength), err)
			}
			return b
		},
		Part: 5 << 20,
		// SeaweedFS gives an object's time in whole seconds.
		Tick: 1100 * time.Millisecond,
	})

	t.Run("PresignedURLExpires", func(t *testing.T) {
		// The suite's URL checks that a presigned URL serves the blob;
		// once expired, it does not.
		ctx := t.Context()
		s := newStore(t, w, "expiry/", "")
		h, err := layers.Put(ctx, s, objstoretest.RandomBytes(1000))
		if err != nil {
			t.Fatal(err)
		}
		short, err := s.URL(ctx, h, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(2500 * time.Millisecond)
		resp, err := http.Get(short)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("GET of an expired URL: %s, want 403", resp.Status)
		}
	})

	t.Run("KilledUploadsCleaned", func(t *testing.T) {
		// What a killed replica leaves: a multipart upload started on a
		// blob's key and never completed (invisible), and, from earlier
		// versions, a tmp/ object. The next store to start past
		// TempAge aborts and removes them.
		ctx := t.Context()
		s := newStore(t, w, "killed/", "")
		data := objstoretest.RandomBytes(5 << 20)
		key := s.Key(objstoretest.Digest(data))
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
		if _, err := s.Stat(ctx, objstoretest.Digest(data)); !errors.Is(err, layers.ErrBlobUnknown) {
			t.Errorf("Stat of an uncompleted upload: %v", err)
		}
		if n := uploads(t, s, "killed/"); n != 1 {
			t.Fatalf("%d uploads before the cleanup, want 1", n)
		}
		// A store started now with the default age keeps them (another
		// replica may be writing); one with a short age removes them.
		newStore(t, w, "killed/", "")
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
