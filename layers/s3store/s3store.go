// Package s3store is a [layers.BlobStore] in an S3 bucket (Amazon S3 or an
// S3-compatible store such as SeaweedFS), with presigned URLs for serving
// blobs by redirect.
//
// Layout of the bucket, under an optional prefix:
//
//	blobs/sha256/<hex>           committed blobs
//	tmp/<random>                 multipart uploads in progress
//	quarantine/<hex>.<unixnano>  damaged blobs set aside ([Store.Quarantine])
//
// # Writing
//
// A blob is hashed (sha256) while it is written. One that fits in one part
// ([Options.PartSize], 8 MiB by default) is kept in memory and, at Commit,
// once its digest is checked, sent with one PutObject to its final key.
// A larger one is streamed as a multipart upload to a temporary key, at
// most two parts in flight, so a writer holds at most three parts in
// memory whatever the blob's size; at Commit, once the digest is checked,
// the upload is completed and copied on the server to the final key, and
// the temporary object deleted. Every part carries its MD5 (Content-MD5),
// which the server checks. So an object appears under a digest only whole
// and verified; S3's PutObject, CompleteMultipartUpload and CopyObject are
// atomic. [New] removes temporary objects and aborts multipart uploads
// older than [Options.TempAge] (a day by default), which a killed process
// left behind.
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
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nixery-go/nixery/layers"
)

// Defaults of [Options].
const (
	DefaultPartSize = 8 << 20
	DefaultTempAge  = 24 * time.Hour
	// maxInflight is how many parts of one blob are uploaded at once.
	maxInflight = 2
	// maxCopy is the largest object CopyObject copies in one request.
	maxCopy = 5 << 30
	// copyPart is the size of the parts of a larger copy.
	copyPart = 1 << 30
	// quarantineAge is how long a quarantined blob is kept.
	quarantineAge = 7 * 24 * time.Hour
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
	// TempAge is the age past which New removes temporary objects; zero
	// is DefaultTempAge.
	TempAge time.Duration
}

// Store is a [layers.BlobStore] in an S3 bucket. It is safe for concurrent
// use, and several processes may share one bucket.
type Store struct {
	c       *s3.Client
	presign *s3.PresignClient
	bucket  string
	prefix  string
	part    int
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
	s := &Store{c: c, presign: s3.NewPresignClient(c), bucket: o.Bucket, prefix: o.Prefix, part: o.PartSize}
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
	if _, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: aws.String(s.prefix + "blobs/"), MaxKeys: aws.Int32(1)}); err != nil {
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
func (s *Store) Key(h v1.Hash) string { return s.prefix + "blobs/sha256/" + h.Hex }

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
	return &reader{
		s: s, ctx: ctx, key: s.Key(h), name: h.Hex,
		size: aws.ToInt64(o.ContentLength), etag: aws.ToString(o.ETag), mtime: aws.ToTime(o.LastModified),
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

// reader reads an object by ranged GETs.
type reader struct {
	s     *Store
	ctx   context.Context
	key   string
	name  string
	size  int64
	etag  string
	mtime time.Time

	off  int64
	body io.ReadCloser // positioned at off, or nil
}

var _ layers.Versioned = (*reader)(nil)

func (r *reader) Read(p []byte) (int, error) {
	if r.off >= r.size {
		return 0, io.EOF
	}
	if r.body == nil {
		o, err := r.s.c.GetObject(r.ctx, &s3.GetObjectInput{
			Bucket: &r.s.bucket, Key: &r.key, IfMatch: aws.String(r.etag),
			Range: aws.String(fmt.Sprintf("bytes=%d-", r.off)),
		})
		if err != nil {
			return 0, fmt.Errorf("s3store: read %s: %w", r.key, err)
		}
		r.body = o.Body
	}
	n, err := r.body.Read(p)
	r.off += int64(n)
	if err == io.EOF && r.off < r.size {
		err = fmt.Errorf("s3store: read %s: %w after %d of %d bytes", r.key, io.ErrUnexpectedEOF, r.off, r.size)
	}
	if err == io.EOF || r.off >= r.size {
		r.body.Close()
		r.body = nil
		if err == nil && r.off >= r.size {
			err = io.EOF
		}
	}
	return n, err
}

func (r *reader) Seek(offset int64, whence int) (int64, error) {
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = r.off + offset
	case io.SeekEnd:
		abs = r.size + offset
	default:
		return 0, errors.New("s3store: seek: bad whence")
	}
	if abs < 0 {
		return 0, errors.New("s3store: seek before the start")
	}
	if abs != r.off && r.body != nil {
		r.body.Close()
		r.body = nil
	}
	r.off = abs
	return abs, nil
}

func (r *reader) Close() error {
	if r.body != nil {
		r.body.Close()
		r.body = nil
	}
	return nil
}

// Stat describes the object as a regular file.
func (r *reader) Stat() (fs.FileInfo, error) { return objectInfo{r}, nil }

// Version returns the object's ETag.
func (r *reader) Version() string { return r.etag }

type objectInfo struct{ r *reader }

func (i objectInfo) Name() string       { return i.r.name }
func (i objectInfo) Size() int64        { return i.r.size }
func (i objectInfo) Mode() fs.FileMode  { return 0o444 }
func (i objectInfo) ModTime() time.Time { return i.r.mtime }
func (i objectInfo) IsDir() bool        { return false }
func (i objectInfo) Sys() any           { return nil }

// Create starts a new blob.
func (s *Store) Create(ctx context.Context) (layers.BlobWriter, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var b [16]byte
	rand.Read(b[:])
	return &writer{
		s: s, ctx: ctx, tmp: s.prefix + "tmp/" + hex.EncodeToString(b[:]),
		h: sha256.New(), sem: make(chan struct{}, maxInflight), free: make(chan []byte, maxInflight+1),
	}, nil
}

// writer writes one blob: in memory up to one part, then as a multipart
// upload to a temporary key.
type writer struct {
	s   *Store
	ctx context.Context
	tmp string
	h   hash.Hash
	n   int64
	buf []byte // the part being filled

	upload string // multipart upload id, once started
	next   int32  // number of the next part
	sem    chan struct{}
	free   chan []byte
	wg     sync.WaitGroup

	mu    sync.Mutex
	parts []types.CompletedPart
	err   error // first failure, sticky

	done bool
}

// Digest returns the sha256 digest of the bytes written so far
// ([layers.Digester]).
func (w *writer) Digest() v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(w.h.Sum(nil))}
}

func (w *writer) failed() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

func (w *writer) fail(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil {
		w.err = err
	}
}

func (w *writer) Write(p []byte) (int, error) {
	if w.done {
		return 0, errors.New("s3store: write to a finished blob")
	}
	if err := w.failed(); err != nil {
		return 0, err
	}
	written := 0
	for len(p) > 0 {
		if w.buf == nil && w.next > 0 {
			// A multipart upload: whole parts, reused.
			select {
			case w.buf = <-w.free:
				w.buf = w.buf[:0]
			default:
				w.buf = make([]byte, 0, w.s.part)
			}
		}
		room := w.s.part - len(w.buf)
		k := min(room, len(p))
		w.buf = append(w.buf, p[:k]...)
		w.h.Write(p[:k])
		w.n += int64(k)
		written += k
		p = p[k:]
		if len(w.buf) == w.s.part {
			if err := w.flush(); err != nil {
				return written, err
			}
		}
	}
	return written, nil
}

// flush uploads the buffered part in the background, after starting the
// multipart upload if need be, and waits while maxInflight parts are in
// flight.
func (w *writer) flush() error {
	if w.upload == "" {
		o, err := w.s.c.CreateMultipartUpload(w.ctx, &s3.CreateMultipartUploadInput{
			Bucket: &w.s.bucket, Key: &w.tmp, ContentType: aws.String("application/octet-stream"),
		})
		if err != nil {
			err = fmt.Errorf("s3store: start upload: %w", err)
			w.fail(err)
			return err
		}
		w.upload = aws.ToString(o.UploadId)
	}
	select {
	case w.sem <- struct{}{}:
	case <-w.ctx.Done():
		w.fail(context.Cause(w.ctx))
		return context.Cause(w.ctx)
	}
	if err := w.failed(); err != nil {
		<-w.sem
		return err
	}
	w.next++
	num, buf := w.next, w.buf
	w.buf = nil
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		defer func() { <-w.sem }()
		sum := md5.Sum(buf)
		o, err := w.s.c.UploadPart(w.ctx, &s3.UploadPartInput{
			Bucket: &w.s.bucket, Key: &w.tmp, UploadId: &w.upload, PartNumber: aws.Int32(num),
			Body: bytes.NewReader(buf), ContentLength: aws.Int64(int64(len(buf))),
			ContentMD5: aws.String(base64.StdEncoding.EncodeToString(sum[:])),
		})
		if err != nil {
			w.fail(fmt.Errorf("s3store: upload part %d: %w", num, err))
		} else {
			w.mu.Lock()
			w.parts = append(w.parts, types.CompletedPart{ETag: o.ETag, PartNumber: aws.Int32(num)})
			w.mu.Unlock()
		}
		select {
		case w.free <- buf:
		default:
		}
	}()
	return nil
}

// Commit checks the digest and makes the blob visible under h.
func (w *writer) Commit(h v1.Hash) error {
	if w.done {
		return errors.New("s3store: commit of a finished blob")
	}
	final, err := w.s.key(h)
	if err != nil {
		w.Cancel()
		return err
	}
	if got := w.Digest(); got != h {
		w.Cancel()
		return fmt.Errorf("%w: wrote %s, want %s", layers.ErrDigestMismatch, got, h)
	}
	if w.upload == "" {
		// One part: straight to its key.
		sum := md5.Sum(w.buf)
		_, err := w.s.c.PutObject(w.ctx, &s3.PutObjectInput{
			Bucket: &w.s.bucket, Key: &final, Body: bytes.NewReader(w.buf),
			ContentLength: aws.Int64(int64(len(w.buf))), ContentType: aws.String("application/octet-stream"),
			ContentMD5: aws.String(base64.StdEncoding.EncodeToString(sum[:])),
		})
		w.done, w.buf = true, nil
		if err != nil {
			return fmt.Errorf("s3store: commit blob %s: %w", h, err)
		}
		return nil
	}
	if len(w.buf) > 0 {
		if err := w.flush(); err != nil {
			w.Cancel()
			return err
		}
	}
	w.wg.Wait()
	if err := w.failed(); err != nil {
		w.Cancel()
		return err
	}
	sort.Slice(w.parts, func(i, j int) bool { return *w.parts[i].PartNumber < *w.parts[j].PartNumber })
	_, err = w.s.c.CompleteMultipartUpload(w.ctx, &s3.CompleteMultipartUploadInput{
		Bucket: &w.s.bucket, Key: &w.tmp, UploadId: &w.upload,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: w.parts},
	})
	if err != nil {
		w.Cancel()
		return fmt.Errorf("s3store: complete upload of %s: %w", h, err)
	}
	w.upload = ""
	err = w.s.copy(w.ctx, w.tmp, final, w.n)
	w.Cancel() // removes the temporary object
	if err != nil {
		return fmt.Errorf("s3store: commit blob %s: %w", h, err)
	}
	return nil
}

// Cancel discards what was written.
func (w *writer) Cancel() error {
	if w.done {
		return nil
	}
	w.done, w.buf = true, nil
	w.wg.Wait()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(w.ctx), time.Minute)
	defer cancel()
	if w.upload != "" {
		_, err := w.s.c.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &w.s.bucket, Key: &w.tmp, UploadId: &w.upload})
		if err != nil && !notFound(err) {
			return fmt.Errorf("s3store: cancel blob: %w", err)
		}
		return nil
	}
	_, err := w.s.c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &w.s.bucket, Key: &w.tmp})
	if err != nil && !notFound(err) {
		return fmt.Errorf("s3store: cancel blob: %w", err)
	}
	return nil
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
	prefix := s.prefix + "blobs/sha256/"
	p := s3.NewListObjectsV2Paginator(s.c, &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: &prefix})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("s3store: list blobs: %w", err)
		}
		for _, o := range page.Contents {
			h := v1.Hash{Algorithm: "sha256", Hex: strings.TrimPrefix(aws.ToString(o.Key), prefix)}
			if layers.ValidateDigest(h) != nil {
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
	q := fmt.Sprintf("%squarantine/%s.%d", s.prefix, h.Hex, time.Now().UnixNano())
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
		p := s3.NewListObjectsV2Paginator(s.c, &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: aws.String(s.prefix + prefix)})
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
	old("tmp/", age)
	old("quarantine/", quarantineAge)
	ups, err := s.c.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: &s.bucket, Prefix: aws.String(s.prefix + "tmp/")})
	if err != nil {
		return
	}
	for _, u := range ups.Uploads {
		if time.Since(aws.ToTime(u.Initiated)) > age {
			s.c.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &s.bucket, Key: u.Key, UploadId: u.UploadId})
		}
	}
}

// The image records of package images (images.RecordStore), under
// index/<key>.json, so that every server on the bucket sees every image.

func (s *Store) recordKey(key string) (string, error) {
	if layers.ValidateDigest(v1.Hash{Algorithm: "sha256", Hex: key}) != nil {
		return "", fmt.Errorf("s3store: bad record key %q", key)
	}
	return s.prefix + "index/" + key + ".json", nil
}

// PutRecord stores the record of the image key.
func (s *Store) PutRecord(ctx context.Context, key string, data []byte) error {
	k, err := s.recordKey(key)
	if err != nil {
		return err
	}
	sum := md5.Sum(data)
	_, err = s.c.PutObject(ctx, &s3.PutObjectInput{
		Bucket: &s.bucket, Key: &k, Body: bytes.NewReader(data), ContentLength: aws.Int64(int64(len(data))),
		ContentType: aws.String("application/json"), ContentMD5: aws.String(base64.StdEncoding.EncodeToString(sum[:])),
	})
	if err != nil {
		return fmt.Errorf("s3store: put record %s: %w", key, err)
	}
	return nil
}

// GetRecord returns the record of the image key.
func (s *Store) GetRecord(ctx context.Context, key string) ([]byte, error) {
	k, err := s.recordKey(key)
	if err != nil {
		return nil, err
	}
	o, err := s.c.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: &k})
	if notFound(err) {
		return nil, fmt.Errorf("s3store: record %s: %w", key, fs.ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("s3store: get record %s: %w", key, err)
	}
	defer o.Body.Close()
	b, err := io.ReadAll(io.LimitReader(o.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("s3store: get record %s: %w", key, err)
	}
	return b, nil
}

// ListRecords calls fn with the key of every record.
func (s *Store) ListRecords(ctx context.Context, fn func(key string) error) error {
	prefix := s.prefix + "index/"
	p := s3.NewListObjectsV2Paginator(s.c, &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: &prefix})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("s3store: list records: %w", err)
		}
		for _, o := range page.Contents {
			key, ok := strings.CutSuffix(strings.TrimPrefix(aws.ToString(o.Key), prefix), ".json")
			if !ok || layers.ValidateDigest(v1.Hash{Algorithm: "sha256", Hex: key}) != nil {
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
	k, err := s.recordKey(key)
	if err != nil {
		return err
	}
	if _, err := s.c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: &k}); err != nil && !notFound(err) {
		return fmt.Errorf("s3store: delete record %s: %w", key, err)
	}
	return nil
}
