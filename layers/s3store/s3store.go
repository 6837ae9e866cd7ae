// Package s3store is a [layers.BlobStore] in an S3 bucket (Amazon S3 or an
// S3-compatible store such as SeaweedFS), with presigned URLs for serving
// blobs by redirect.
//
// Layout of the bucket, under an optional prefix:
//
//	blobs/sha256/<hex>           committed blobs
//	quarantine/<hex>.<unixnano>  damaged blobs set aside ([Store.Quarantine])
//	index/<key>.json             image records ([Store.PutRecord])
//	state/<name>                 small shared objects ([Store.PutState])
//
// (names as [objstore.Layout] gives them).
//
// # Writing
//
// A blob is hashed (sha256) while it is written. One that fits in one part
// ([Options.PartSize], 8 MiB by default) is kept in memory and, at Commit,
// once its digest is checked, sent with one PutObject to its final key.
// A larger one is spooled to a local file ([Options.SpoolDir]), unlinked as
// soon as it is created, with each part's MD5 summed on the way; at Commit,
// once the digest is checked, it is sent as a multipart upload straight to
// its final key, four parts at a time, read from the file. A writer holds
// at most one part in memory whatever the blob's size. Every request
// carries its MD5 (Content-MD5), which the server checks, and a multipart
// upload becomes an object only when it is completed, atomically: so an
// object appears under a digest only whole and verified, and no
// server-side copy is needed. Uploads that a killed process left
// incomplete are aborted by [New] once older than [Options.TempAge] (a day
// by default); so are the tmp/ objects of earlier versions, which uploaded
// there and copied.
//
// Spooling rather than streaming the parts as they are written costs
// local disk space (the largest blobs being written at once) and no
// throughput on a busy machine: compression and the object store's ingest
// both take every core, so overlapping them gains little, while the copy
// that streaming to a temporary key needs (the digest, hence the key, is
// known only at the end) costs the object store as much again as the
// upload. See BenchmarkAssemblyStore in benchmarks/speed.
//
// # Reading
//
// Open asks for the object's metadata only (HeadObject); the bytes are
// fetched by ranged GETs on the first Read after a Seek, each pinned to the
// ETag that Open saw (If-Match), so a reader never mixes two versions of
// an object. The reader reports the object's size, last modification and
// ETag (Stat, [layers.Versioned]), which is what [layers.Verifier] needs to
// know when a blob must be hashed again.
package s3store

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"net/url"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nixery-go/nixery/layers"
	"github.com/nixery-go/nixery/layers/objstore"
)

// Defaults of [Options].
const (
	DefaultPartSize = 8 << 20
	DefaultTempAge  = 24 * time.Hour
	// maxInflight is how many parts of one blob are uploaded at once.
	maxInflight = 4
	// maxCopy is the largest object CopyObject copies in one request.
	maxCopy = 5 << 30
	// copyPart is the size of the parts of a larger copy.
	copyPart = 1 << 30
)

// Options configure a [Store].
type Options struct {
	Bucket string
	// Prefix is prepended to every key ("nixery/" puts the blobs under
	// nixery/blobs/...); empty uses the bucket's root.
	Prefix string
	// Endpoint is the URL of an S3-compatible store
	// (http://127.0.0.1:8333); empty is AWS. With an endpoint, addressing
	// is path-style.
	Endpoint string
	// Region is the bucket's region; empty takes AWS_REGION or the
	// profile's, and us-east-1 for an endpoint when neither says.
	Region string
	// PartSize is the size of the parts of a multipart upload (at least
	// 5 MiB); zero is DefaultPartSize.
	PartSize int
	// TempAge is the age past which New removes temporary objects and
	// aborts multipart uploads; zero is DefaultTempAge.
	TempAge time.Duration
	// SpoolDir holds a blob larger than one part while it is written,
	// until Commit uploads it (as a file unlinked at once, so nothing is
	// left if the process dies); empty is os.TempDir(). It needs room for
	// the largest layers being built at once.
	SpoolDir string
}

// Store is a [layers.BlobStore] in an S3 bucket. It is safe for concurrent
// use, and several processes may share one bucket.
type Store struct {
	c        *s3.Client
	presign  *s3.PresignClient
	bucket   string
	prefix   string
	keys     objstore.Layout
	part     int
	spoolDir string
}

var (
	_ layers.BlobStore   = (*Store)(nil)
	_ layers.Quarantiner = (*Store)(nil)
)

// New returns a store in the bucket o.Bucket, with credentials from the
// standard AWS chain (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, shared
// profiles, web identity, instance and container roles). It checks that the
// bucket can be listed and cleans up what killed writers left behind.
func New(ctx context.Context, o Options) (*Store, error) {
	if o.Bucket == "" {
		return nil, errors.New("s3store: no bucket (S3_BUCKET)")
	}
	var lo []func(*config.LoadOptions) error
	if o.Region != "" {
		lo = append(lo, config.WithRegion(o.Region))
	}
	cfg, err := config.LoadDefaultConfig(ctx, lo...)
	if err != nil {
		return nil, fmt.Errorf("s3store: AWS configuration: %w", err)
	}
	if cfg.Region == "" && o.Endpoint != "" {
		cfg.Region = "us-east-1"
	}
	// The store checks its own digests and sends Content-MD5; the SDK's
	// default CRC checksums (aws-chunked trailers) are not understood by
	// every S3-compatible store.
	cfg.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
	cfg.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	c := s3.NewFromConfig(cfg, func(so *s3.Options) {
		if o.Endpoint != "" {
			so.BaseEndpoint = aws.String(o.Endpoint)
			so.UsePathStyle = true
		}
	})
	return NewFromClient(ctx, c, o)
}

// NewFromClient is [New] with a client of the caller's; o.Endpoint and
// o.Region are ignored.
func NewFromClient(ctx context.Context, c *s3.Client, o Options) (*Store, error) {
	s := &Store{c: c, presign: s3.NewPresignClient(c), bucket: o.Bucket, prefix: o.Prefix, keys: objstore.Layout{Pkg: "s3store", Prefix: o.Prefix}, part: o.PartSize, spoolDir: o.SpoolDir}
	if s.part == 0 {
		s.part = DefaultPartSize
	}
	if s.part < 5<<20 {
		return nil, fmt.Errorf("s3store: part size %d is below S3's minimum of 5 MiB", s.part)
	}
	age := o.TempAge
	if age == 0 {
		age = DefaultTempAge
	}
	if _, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: aws.String(s.keys.Blobs()), MaxKeys: aws.Int32(1)}); err != nil {
		return nil, fmt.Errorf("s3store: bucket %s: %w", s.bucket, err)
	}
	s.cleanup(ctx, age)
	return s, nil
}

// Client returns the store's S3 client.
func (s *Store) Client() *s3.Client { return s.c }

// Bucket returns the store's bucket.
func (s *Store) Bucket() string { return s.bucket }

// Key returns the key of the blob h.
func (s *Store) Key(h v1.Hash) string { return s.keys.Blob(h) }

// key validates h and returns its key.
func (s *Store) key(h v1.Hash) (string, error) {
	if err := layers.ValidateDigest(h); err != nil {
		return "", err
	}
	return s.Key(h), nil
}

// notFound reports whether err is S3's answer for a missing object.
func notFound(err error) bool {
	var re *awshttp.ResponseError
	if errors.As(err, &re) && re.HTTPStatusCode() == 404 {
		return true
	}
	var nk *types.NoSuchKey
	var nf *types.NotFound
	return errors.As(err, &nk) || errors.As(err, &nf)
}

// Stat returns the size of the blob h.
func (s *Store) Stat(ctx context.Context, h v1.Hash) (int64, error) {
	o, err := s.head(ctx, h)
	if err != nil {
		return 0, err
	}
	return aws.ToInt64(o.ContentLength), nil
}

func (s *Store) head(ctx context.Context, h v1.Hash) (*s3.HeadObjectOutput, error) {
	k, err := s.key(h)
	if err != nil {
		return nil, err
	}
	o, err := s.c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: &k})
	if notFound(err) {
		return nil, fmt.Errorf("%w: %s", layers.ErrBlobUnknown, h)
	}
	if err != nil {
		return nil, fmt.Errorf("s3store: stat blob %s: %w", h, err)
	}
	return o, nil
}

// Open returns a reader of the blob h. Only its metadata is fetched now.
func (s *Store) Open(ctx context.Context, h v1.Hash) (io.ReadSeekCloser, error) {
	o, err := s.head(ctx, h)
	if err != nil {
		return nil, err
	}
	key, etag := s.Key(h), aws.ToString(o.ETag)
	return &objstore.Reader{
		Ctx: ctx, Pkg: "s3store", Key: key, Name: h.Hex,
		Size: aws.ToInt64(o.ContentLength), ModTime: aws.ToTime(o.LastModified), Ver: etag,
		Open: func(ctx context.Context, off int64) (io.ReadCloser, error) {
			o, err := s.c.GetObject(ctx, &s3.GetObjectInput{
				Bucket: &s.bucket, Key: &key, IfMatch: aws.String(etag),
				Range: aws.String(fmt.Sprintf("bytes=%d-", off)),
			})
			if err != nil {
				return nil, err
			}
			return o.Body, nil
		},
	}, nil
}

// URL returns a presigned GET URL of the blob h, valid for expiry
// ([layers.URLStore]). It does not check that the blob exists.
func (s *Store) URL(ctx context.Context, h v1.Hash, expiry time.Duration) (string, error) {
	k, err := s.key(h)
	if err != nil {
		return "", err
	}
	r, err := s.presign.PresignGetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: &k}, s3.WithPresignExpires(expiry))
	if err != nil {
		return "", fmt.Errorf("s3store: presign %s: %w", h, err)
	}
	return r.URL, nil
}

// Create starts a new blob.
func (s *Store) Create(ctx context.Context) (layers.BlobWriter, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sums := &partSums{part: int64(s.part), h: md5.New()}
	return &writer{Spool: objstore.NewSpool("s3store", s.spoolDir, s.part, sums), s: s, ctx: ctx, sums: sums}, nil
}

// unsigned makes a request carry UNSIGNED-PAYLOAD instead of the body's
// SHA-256 in its signature, so the body is not hashed once more on the
// way out (over plain HTTP the SDK would). The body is still checked: every
// upload carries its Content-MD5, which is signed, and the blob's digest
// was checked before the upload.
var unsigned = s3.WithAPIOptions(v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware)

// writer writes one blob: in memory up to one part, then spooled to an
// unlinked local file (objstore.Spool), uploaded at Commit.
type writer struct {
	*objstore.Spool
	s    *Store
	ctx  context.Context
	sums *partSums
}

// partSums sums the MD5 of every part of a blob as it is written.
type partSums struct {
	part, n int64
	h       hash.Hash
	sums    [][md5.Size]byte // of the whole parts so far
}

func (p *partSums) Write(b []byte) (int, error) {
	w := len(b)
	for len(b) > 0 {
		k := min(int64(len(b)), p.part-p.n%p.part)
		p.h.Write(b[:k])
		p.n += k
		b = b[k:]
		if p.n%p.part == 0 {
			p.sums = append(p.sums, [md5.Size]byte(p.h.Sum(nil)))
			p.h.Reset()
		}
	}
	return w, nil
}

// all returns the MD5 of every part, the last one included.
func (p *partSums) all() [][md5.Size]byte {
	if p.n%p.part != 0 {
		return append(p.sums, [md5.Size]byte(p.h.Sum(nil)))
	}
	return p.sums
}

// Commit checks the digest and makes the blob visible under h.
func (w *writer) Commit(h v1.Hash) error {
	defer w.Cancel()
	final, err := w.s.key(h)
	if err != nil {
		return err
	}
	buf, f, err := w.Finish(h)
	if err != nil {
		return err
	}
	if f == nil {
		// One part: straight to its key.
		sum := md5.Sum(buf)
		_, err := w.s.c.PutObject(w.ctx, &s3.PutObjectInput{
			Bucket: &w.s.bucket, Key: &final, Body: bytes.NewReader(buf),
			ContentLength: aws.Int64(int64(len(buf))), ContentType: aws.String("application/octet-stream"),
			ContentMD5: aws.String(base64.StdEncoding.EncodeToString(sum[:])),
		}, unsigned)
		if err != nil {
			return fmt.Errorf("s3store: commit blob %s: %w", h, err)
		}
		return nil
	}
	if err := w.s.upload(w.ctx, final, f, w.Size(), w.sums.all()); err != nil {
		return fmt.Errorf("s3store: commit blob %s: %w", h, err)
	}
	return nil
}

// Cancel discards what was written. Nothing has reached the bucket before
// Commit, so there is nothing to remove there.
func (w *writer) Cancel() error { return w.Close() }

// upload uploads size bytes of f to key as a multipart upload, at most
// maxInflight parts at once, sums[i] being part i's MD5. Until it is
// completed, a multipart upload is not an object: nothing is visible under
// key before every part is in.
func (s *Store) upload(ctx context.Context, key string, f io.ReaderAt, size int64, sums [][md5.Size]byte) error {
	o, err := s.c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket: &s.bucket, Key: &key, ContentType: aws.String("application/octet-stream"),
	})
	if err != nil {
		return fmt.Errorf("start upload: %w", err)
	}
	id := o.UploadId
	parts := make([]types.CompletedPart, len(sums))
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, maxInflight)
	for i := range sums {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			off := int64(i) * int64(s.part)
			n := min(int64(s.part), size-off)
			num := aws.Int32(int32(i + 1))
			r, err := s.c.UploadPart(ctx, &s3.UploadPartInput{
				Bucket: &s.bucket, Key: &key, UploadId: id, PartNumber: num,
				Body: io.NewSectionReader(f, off, n), ContentLength: aws.Int64(n),
				ContentMD5: aws.String(base64.StdEncoding.EncodeToString(sums[i][:])),
			}, unsigned)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if first == nil {
					first = fmt.Errorf("upload part %d: %w", i+1, err)
				}
				cancel()
				return
			}
			parts[i] = types.CompletedPart{ETag: r.ETag, PartNumber: num}
		}()
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		first = context.Cause(ctx)
	}
	if first == nil {
		_, first = s.c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
			Bucket: &s.bucket, Key: &key, UploadId: id,
			MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
		})
		if first != nil {
			first = fmt.Errorf("complete upload: %w", first)
		}
	}
	if first != nil {
		actx, acancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer acancel()
		s.c.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{Bucket: &s.bucket, Key: &key, UploadId: id})
	}
	return first
}

// copy copies the object from to the key to on the server.
func (s *Store) copy(ctx context.Context, from, to string, size int64) error {
	src := s.bucket + "/" + (&url.URL{Path: from}).EscapedPath()
	if size <= maxCopy {
		_, err := s.c.CopyObject(ctx, &s3.CopyObjectInput{
			Bucket: &s.bucket, Key: &to, CopySource: &src,
			ContentType: aws.String("application/octet-stream"), MetadataDirective: types.MetadataDirectiveReplace,
		})
		return err
	}
	o, err := s.c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &s.bucket, Key: &to, ContentType: aws.String("application/octet-stream")})
	if err != nil {
		return err
	}
	var parts []types.CompletedPart
	for off, num := int64(0), int32(1); off < size; off, num = off+copyPart, num+1 {
		end := min(off+copyPart, size) - 1
		p, err := s.c.UploadPartCopy(ctx, &s3.UploadPartCopyInput{
			Bucket: &s.bucket, Key: &to, UploadId: o.UploadId, PartNumber: aws.Int32(num),
			CopySource: &src, CopySourceRange: aws.String(fmt.Sprintf("bytes=%d-%d", off, end)),
		})
		if err != nil {
			s.c.AbortMultipartUpload(context.WithoutCancel(ctx), &s3.AbortMultipartUploadInput{Bucket: &s.bucket, Key: &to, UploadId: o.UploadId})
			return err
		}
		parts = append(parts, types.CompletedPart{ETag: p.CopyPartResult.ETag, PartNumber: aws.Int32(num)})
	}
	_, err = s.c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: &s.bucket, Key: &to, UploadId: o.UploadId, MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	})
	return err
}

// List calls fn for every committed blob.
func (s *Store) List(ctx context.Context, fn func(layers.BlobInfo) error) error {
	prefix := s.keys.Blobs()
	p := s3.NewListObjectsV2Paginator(s.c, &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: &prefix})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("s3store: list blobs: %w", err)
		}
		for _, o := range page.Contents {
			h, ok := s.keys.BlobOf(aws.ToString(o.Key))
			if !ok {
				continue
			}
			if err := fn(layers.BlobInfo{Digest: h, Size: aws.ToInt64(o.Size), ModTime: aws.ToTime(o.LastModified)}); err != nil {
				return err
			}
		}
	}
	return nil
}

// Delete removes the blob h. A reader that has it open may fail on its
// next GET.
func (s *Store) Delete(ctx context.Context, h v1.Hash) error {
	if _, err := s.head(ctx, h); err != nil {
		return err
	}
	k := s.Key(h)
	if _, err := s.c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: &k}); err != nil {
		return fmt.Errorf("s3store: delete blob %s: %w", h, err)
	}
	return nil
}

// Quarantine copies the blob h to quarantine/, where it stays for a week,
// and deletes it.
func (s *Store) Quarantine(ctx context.Context, h v1.Hash) error {
	o, err := s.head(ctx, h)
	if err != nil {
		return err
	}
	k := s.Key(h)
	q := s.keys.Quarantine(h)
	if err := s.copy(ctx, k, q, aws.ToInt64(o.ContentLength)); err != nil {
		return fmt.Errorf("s3store: quarantine %s: %w", h, err)
	}
	if _, err := s.c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: &k}); err != nil {
		return fmt.Errorf("s3store: quarantine %s: %w", h, err)
	}
	return nil
}

// cleanup removes temporary objects and uploads older than age, and
// quarantined blobs older than a week. Failures are ignored: the next
// start tries again.
func (s *Store) cleanup(ctx context.Context, age time.Duration) {
	old := func(prefix string, age time.Duration) {
		p := s3.NewListObjectsV2Paginator(s.c, &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: aws.String(prefix)})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				return
			}
			for _, o := range page.Contents {
				if time.Since(aws.ToTime(o.LastModified)) > age {
					s.c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: o.Key})
				}
			}
		}
	}
	old(s.prefix+"tmp/", age)
	old(s.keys.Quarantined(), objstore.QuarantineAge)
	p := s3.NewListMultipartUploadsPaginator(s.c, &s3.ListMultipartUploadsInput{Bucket: &s.bucket, Prefix: aws.String(s.prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return
		}
		for _, u := range page.Uploads {
			if time.Since(aws.ToTime(u.Initiated)) > age {
				s.c.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &s.bucket, Key: u.Key, UploadId: u.UploadId})
			}
		}
	}
}

// The image records of package images (images.RecordStore), under
// index/<key>.json, so that every server on the bucket sees every image.

// PutRecord stores the record of the image key.
func (s *Store) PutRecord(ctx context.Context, key string, data []byte) error {
	k, err := s.keys.Record(key)
	if err != nil {
		return err
	}
	return s.putSmall(ctx, k, data, "record "+key)
}

// putSmall puts a small JSON object under k; what names it in errors.
func (s *Store) putSmall(ctx context.Context, k string, data []byte, what string) error {
	sum := md5.Sum(data)
	_, err := s.c.PutObject(ctx, &s3.PutObjectInput{
		Bucket: &s.bucket, Key: &k, Body: bytes.NewReader(data), ContentLength: aws.Int64(int64(len(data))),
		ContentType: aws.String("application/json"), ContentMD5: aws.String(base64.StdEncoding.EncodeToString(sum[:])),
	})
	if err != nil {
		return fmt.Errorf("s3store: put %s: %w", what, err)
	}
	return nil
}

// getSmall returns the object k (at most 16 MiB) and its write time, or an
// error matching fs.ErrNotExist; what names it in errors.
func (s *Store) getSmall(ctx context.Context, k, what string) ([]byte, time.Time, error) {
	o, err := s.c.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: &k})
	if notFound(err) {
		return nil, time.Time{}, fmt.Errorf("s3store: %s: %w", what, fs.ErrNotExist)
	}
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("s3store: get %s: %w", what, err)
	}
	defer o.Body.Close()
	b, err := io.ReadAll(io.LimitReader(o.Body, maxSmall))
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("s3store: get %s: %w", what, err)
	}
	return b, aws.ToTime(o.LastModified), nil
}

// maxSmall bounds a record or state object read back.
const maxSmall = 16 << 20

// deleteKey removes the object k; a missing one is not an error.
func (s *Store) deleteKey(ctx context.Context, k, what string) error {
	if _, err := s.c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: &k}); err != nil && !notFound(err) {
		return fmt.Errorf("s3store: delete %s: %w", what, err)
	}
	return nil
}

// GetRecord returns the record of the image key.
func (s *Store) GetRecord(ctx context.Context, key string) ([]byte, error) {
	k, err := s.keys.Record(key)
	if err != nil {
		return nil, err
	}
	b, _, err := s.getSmall(ctx, k, "record "+key)
	return b, err
}

// ListRecords calls fn with the key of every record.
func (s *Store) ListRecords(ctx context.Context, fn func(key string) error) error {
	prefix := s.keys.Records()
	p := s3.NewListObjectsV2Paginator(s.c, &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: &prefix})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("s3store: list records: %w", err)
		}
		for _, o := range page.Contents {
			key, ok := s.keys.RecordOf(aws.ToString(o.Key))
			if !ok {
				continue
			}
			if err := fn(key); err != nil {
				return err
			}
		}
	}
	return nil
}

// DeleteRecord removes the record of the image key.
func (s *Store) DeleteRecord(ctx context.Context, key string) error {
	k, err := s.keys.Record(key)
	if err != nil {
		return err
	}
	return s.deleteKey(ctx, k, "record "+key)
}

// The small shared objects of package images (images.StateStore: build
// markers, the collection lease, last-requested times), under state/.

// PutState writes the state object name.
func (s *Store) PutState(ctx context.Context, name string, data []byte) error {
	k, err := s.keys.State(name)
	if err != nil {
		return err
	}
	return s.putSmall(ctx, k, data, "state "+name)
}

// GetState returns the state object name and when the store last wrote it.
func (s *Store) GetState(ctx context.Context, name string) ([]byte, time.Time, error) {
	k, err := s.keys.State(name)
	if err != nil {
		return nil, time.Time{}, err
	}
	return s.getSmall(ctx, k, "state "+name)
}

// ListState calls fn with the name and write time of every state object
// whose name starts with prefix.
func (s *Store) ListState(ctx context.Context, prefix string, fn func(name string, mod time.Time) error) error {
	full := s.keys.States() + prefix
	p := s3.NewListObjectsV2Paginator(s.c, &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: &full})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("s3store: list state: %w", err)
		}
		for _, o := range page.Contents {
			name, ok := s.keys.StateOf(aws.ToString(o.Key))
			if !ok {
				continue
			}
			if err := fn(name, aws.ToTime(o.LastModified)); err != nil {
				return err
			}
		}
	}
	return nil
}

// DeleteState removes the state object name.
func (s *Store) DeleteState(ctx context.Context, name string) error {
	k, err := s.keys.State(name)
	if err != nil {
		return err
	}
	return s.deleteKey(ctx, k, "state "+name)
}
