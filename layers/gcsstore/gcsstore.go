// Package gcsstore is a [layers.BlobStore] in a Google Cloud Storage bucket,
// spoken to over GCS's documented JSON API with net/http, with V4-signed
// URLs for serving blobs by redirect. It also runs against an emulator
// (fake-gcs-server) named by STORAGE_EMULATOR_HOST.
//
// Layout of the bucket, under an optional prefix (as in layers/s3store):
//
//	blobs/sha256/<hex>           committed blobs
//	quarantine/<hex>.<unixnano>  damaged blobs set aside ([Store.Quarantine])
//	index/<key>.json             image records ([Store.PutRecord])
//	state/<name>                 small shared objects ([Store.PutState])
//
// # Writing
//
// A blob is hashed (sha256, and MD5 and CRC32C for GCS) while it is
// written. One that fits in one chunk ([Options.ChunkSize], 8 MiB by
// default) is kept in memory and, at Commit, once its digest is checked,
// sent with one multipart upload to its final name. A larger one is
// spooled to a local file ([Options.SpoolDir]), unlinked as soon as it is
// created; at Commit, once the digest is checked, it is sent as a
// resumable upload to its final name, chunk by chunk, read from the file.
// A writer holds at most one chunk in memory whatever the blob's size.
// Both kinds of upload declare the blob's MD5 and CRC32C in the object's
// metadata, which GCS checks before it creates the object, and both are
// atomic: an object appears only when the upload is finalized. So an
// object appears under a digest only whole and verified. An upload that a
// killed process left unfinished is never an object, and GCS forgets it
// after a week; there is nothing to clean up. A chunk that fails (a
// network error, 429 or 5xx) is not sent again blindly: the upload asks
// the session what it holds and goes on from there, a few times in a row
// at most; otherwise the session is cancelled and the write fails.
//
// # Reading
//
// Open asks for the object's metadata only; the bytes are fetched by
// ranged GETs on the first Read after a Seek, each pinned to the
// generation that Open saw, so a reader never mixes two versions of an
// object. The reader reports the object's size, last modification and
// generation (Stat, [layers.Versioned]).
//
// # Credentials
//
// Against GCS, requests carry an OAuth2 token from Google's application
// default credentials (golang.org/x/oauth2/google): the service account
// key file named by GOOGLE_APPLICATION_CREDENTIALS, gcloud's user
// credentials, or the metadata server of GCE, GKE and Cloud Run. Signed
// URLs need a service account key (its client_email and private_key):
// [Store.CanSign] says whether the store has one. Against an emulator no
// token is asked for; URLs are signed with the key when one is given, and
// are plain emulator URLs otherwise.
package gcsstore

import (
	"bytes"
	"context"
	"crypto"
	"crypto/md5"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"io/fs"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"

	"github.com/nixery-go/nixery/layers"
	"github.com/nixery-go/nixery/layers/objstore"
)

// Defaults and limits.
const (
	// DefaultChunkSize is the size of a resumable upload's chunks and
	// the largest blob uploaded in one request.
	DefaultChunkSize = 8 << 20
	// chunkUnit is what GCS wants every chunk but the last to be a
	// multiple of.
	chunkUnit = 256 << 10
	// maxSmall bounds what GetRecord and GetState read.
	maxSmall = 16 << 20
	// maxExpiry is the longest validity of a V4-signed URL.
	maxExpiry = 7 * 24 * time.Hour
	// scope is the OAuth2 scope the store's token needs.
	scope = "https://www.googleapis.com/auth/devstorage.read_write"
	// googleHost is where GCS is, and the host of signed URLs.
	googleHost = "storage.googleapis.com"
)

// Options configure a [Store].
type Options struct {
	// Bucket is the bucket (GCS_BUCKET).
	Bucket string
	// Prefix is prepended to every object name ("nixery/"); empty uses
	// the bucket's root.
	Prefix string
	// EmulatorHost is the host:port (or URL) of a GCS emulator such as
	// fake-gcs-server (STORAGE_EMULATOR_HOST); empty is GCS. Requests to
	// an emulator carry no token.
	EmulatorHost string
	// CredentialsFile is a credentials JSON file
	// (GOOGLE_APPLICATION_CREDENTIALS); empty looks for the application
	// default credentials. A service account key also signs URLs.
	CredentialsFile string
	// ChunkSize is the size of a resumable upload's chunks, a multiple
	// of 256 KiB; zero is DefaultChunkSize.
	ChunkSize int
	// SpoolDir holds a blob larger than one chunk while it is written,
	// until Commit uploads it (as a file unlinked at once, so nothing is
	// left if the process dies); empty is os.TempDir().
	SpoolDir string
	// SignURLs makes New fail unless [Store.URL] can give URLs: against
	// GCS, unless the credentials are a service account key.
	SignURLs bool
	// HTTPClient, when set, sends the requests (its transport is
	// wrapped with the token, against GCS). Nil is a client of a clone
	// of http.DefaultTransport that keeps up to 32 idle connections.
	HTTPClient *http.Client
}

// Store is a [layers.BlobStore] in a GCS bucket. It is safe for concurrent
// use, and several processes may share one bucket.
type Store struct {
	hc       *http.Client
	base     string // scheme://host of the JSON API, no trailing slash
	emulator bool
	bucket   string
	keys     objstore.Layout
	chunk    int
	spoolDir string
	signer   *serviceAccount // nil: cannot sign
}

var (
	_ layers.BlobStore   = (*Store)(nil)
	_ layers.Quarantiner = (*Store)(nil)
	_ layers.URLStore    = (*Store)(nil)
)

// serviceAccount is what signing a URL needs of a service account key.
type serviceAccount struct {
	email string
	key   *rsa.PrivateKey
}

// New returns a store in the bucket o.Bucket. It checks that the bucket can
// be listed and removes quarantined blobs older than a week.
func New(ctx context.Context, o Options) (*Store, error) {
	if o.Bucket == "" {
		return nil, errors.New("gcsstore: no bucket (GCS_BUCKET)")
	}
	if strings.ContainsAny(o.Bucket, "/?#% ") {
		return nil, fmt.Errorf("gcsstore: bad bucket name %q", o.Bucket)
	}
	s := &Store{bucket: o.Bucket, keys: objstore.Layout{Pkg: "gcsstore", Prefix: o.Prefix}, chunk: o.ChunkSize, spoolDir: o.SpoolDir}
	if s.chunk == 0 {
		s.chunk = DefaultChunkSize
	}
	if s.chunk < chunkUnit || s.chunk%chunkUnit != 0 {
		return nil, fmt.Errorf("gcsstore: chunk size %d is not a positive multiple of 256 KiB", s.chunk)
	}
	base := defaultClient
	if o.HTTPClient != nil {
		base = o.HTTPClient
	}
	var keyJSON []byte
	if o.CredentialsFile != "" {
		b, err := os.ReadFile(o.CredentialsFile)
		if err != nil {
			return nil, fmt.Errorf("gcsstore: credentials (GOOGLE_APPLICATION_CREDENTIALS): %w", err)
		}
		keyJSON = b
		// Read before anything is sent, so that a key that cannot
		// sign fails here.
		sa, err := parseServiceAccount(b)
		if err != nil {
			return nil, err
		}
		s.signer = sa
	}
	noSigner := errors.New("gcsstore: signed URLs (for redirects) need a service account key, and " +
		"the credentials (GOOGLE_APPLICATION_CREDENTIALS, or the application default credentials) are not one; " +
		"set GOOGLE_APPLICATION_CREDENTIALS to a service account key file, or NIXERY_BLOB_REDIRECT=false to serve blobs through nixery")
	if o.SignURLs && o.EmulatorHost == "" && o.CredentialsFile != "" && s.signer == nil {
		return nil, noSigner
	}
	if o.EmulatorHost != "" {
		s.emulator = true
		s.base = o.EmulatorHost
		if !strings.Contains(s.base, "://") {
			s.base = "http://" + s.base
		}
		u, err := url.Parse(s.base)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return nil, fmt.Errorf("gcsstore: emulator host (STORAGE_EMULATOR_HOST) %q: want host:port or http://host:port", o.EmulatorHost)
		}
		s.base = u.Scheme + "://" + u.Host
		s.hc = base
	} else {
		s.base = "https://" + googleHost
		var creds *google.Credentials
		var err error
		// The token source refreshes with this context for as long as
		// the store lives, through the caller's client.
		tctx := context.WithValue(context.WithoutCancel(ctx), oauth2.HTTPClient, base)
		if keyJSON != nil {
			creds, err = google.CredentialsFromJSON(tctx, keyJSON, scope)
		} else {
			creds, err = google.FindDefaultCredentials(tctx, scope)
			if creds != nil {
				keyJSON = creds.JSON
			}
		}
		if err != nil {
			return nil, fmt.Errorf("gcsstore: Google credentials: %w", err)
		}
		s.hc = oauth2.NewClient(tctx, creds.TokenSource)
		s.hc.Timeout = base.Timeout
	}
	if s.signer == nil && keyJSON != nil {
		// The application default credentials' file.
		sa, err := parseServiceAccount(keyJSON)
		if err != nil {
			return nil, err
		}
		s.signer = sa
	}
	if o.SignURLs && !s.CanSign() {
		return nil, noSigner
	}
	// A 308 of a resumable upload is an answer, not a redirect.
	hc := *s.hc
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	s.hc = &hc
	if err := s.list(ctx, s.keys.Blobs(), 1, "blobs", func(object) error { return errStop }); err != nil && err != errStop {
		return nil, fmt.Errorf("%w (bucket %s)", err, s.bucket)
	}
	s.cleanup(ctx)
	return s, nil
}

var errStop = errors.New("stop")

// defaultClient sends the requests of stores given no client: Go's
// default transport, keeping more idle connections to the one host than
// its two, for the concurrent reads of a busy server.
var defaultClient = func() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 32
	return &http.Client{Transport: t}
}()

// listPage is the page size of the listings (0: the API's, 1,000); a
// variable for tests.
var listPage = 0

// parseServiceAccount reads the signing key of a service account key file;
// other credentials (a user's, an external account) give nil.
func parseServiceAccount(b []byte) (*serviceAccount, error) {
	var f struct {
		Type        string `json:"type"`
		ClientEmail string `json:"client_email"`
		PrivateKey  string `json:"private_key"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("gcsstore: credentials (GOOGLE_APPLICATION_CREDENTIALS): %w", err)
	}
	if f.Type != "service_account" {
		return nil, nil
	}
	blk, _ := pem.Decode([]byte(f.PrivateKey))
	if f.ClientEmail == "" || blk == nil {
		return nil, errors.New("gcsstore: the service account key has no client_email or no PEM private_key")
	}
	var key *rsa.PrivateKey
	if k, err := x509.ParsePKCS8PrivateKey(blk.Bytes); err == nil {
		rk, ok := k.(*rsa.PrivateKey)
		if !ok {
			return nil, errors.New("gcsstore: the service account's private key is not RSA")
		}
		key = rk
	} else if k, err2 := x509.ParsePKCS1PrivateKey(blk.Bytes); err2 == nil {
		key = k
	} else {
		return nil, fmt.Errorf("gcsstore: the service account's private key: %w", err)
	}
	return &serviceAccount{email: f.ClientEmail, key: key}, nil
}

// CanSign reports whether [Store.URL] can give URLs: the store has a
// service account key, or runs against an emulator.
func (s *Store) CanSign() bool { return s.signer != nil || s.emulator }

// Bucket returns the store's bucket.
func (s *Store) Bucket() string { return s.bucket }

// Key returns the object name of the blob h.
func (s *Store) Key(h v1.Hash) string { return s.keys.Blob(h) }

// key validates h and returns its object name.
func (s *Store) key(h v1.Hash) (string, error) {
	if err := layers.ValidateDigest(h); err != nil {
		return "", err
	}
	return s.Key(h), nil
}

// apiError is a non-2xx answer of the JSON API.
type apiError struct {
	Status  int
	Message string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("HTTP %d: %s", e.Status, e.Message)
}

func notFound(err error) bool {
	var ae *apiError
	return errors.As(err, &ae) && ae.Status == http.StatusNotFound
}

// responseError reads a failed response's error.
func responseError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var e struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	msg := strings.TrimSpace(string(b))
	if json.Unmarshal(b, &e) == nil && e.Error.Message != "" {
		msg = e.Error.Message
	}
	if msg == "" {
		msg = http.StatusText(resp.StatusCode)
	}
	return &apiError{Status: resp.StatusCode, Message: msg}
}

// objectURL is the JSON API URL of an object's metadata.
func (s *Store) objectURL(name string) string {
	return s.base + "/storage/v1/b/" + s.bucket + "/o/" + url.PathEscape(name)
}

// retryable reports whether a request may be sent again after status.
func retryable(status int) bool {
	return status == http.StatusTooManyRequests || status >= 500
}

// do sends the request that mk makes (again, on 429, 5xx and network
// errors, up to three times: mk must give a fresh body each time) and
// returns a 2xx response, or, with ok, one of the statuses in ok.
func (s *Store) do(ctx context.Context, mk func() (*http.Request, error), ok ...int) (*http.Response, error) {
	var last error
	for try := 0; try < 3; try++ {
		if try > 0 {
			if err := pause(ctx, try); err != nil {
				return nil, err
			}
		}
		req, err := mk()
		if err != nil {
			return nil, err
		}
		resp, err := s.hc.Do(req.WithContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return nil, err
			}
			last = err
			continue
		}
		if resp.StatusCode/100 == 2 || containsInt(ok, resp.StatusCode) {
			return resp, nil
		}
		last = responseError(resp)
		resp.Body.Close()
		if !retryable(resp.StatusCode) {
			break
		}
	}
	return nil, last
}

// pause waits before the try-th retry of a request (0.2 s, 0.8 s, 1.8 s,
// ...), or until ctx ends, when it returns ctx's cause.
func pause(ctx context.Context, try int) error {
	select {
	case <-time.After(time.Duration(try*try) * 200 * time.Millisecond):
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

func containsInt(xs []int, x int) bool {
	for _, y := range xs {
		if x == y {
			return true
		}
	}
	return false
}

// object is an object's metadata, as the JSON API gives it.
type object struct {
	Name       string    `json:"name"`
	Size       int64     `json:"size,string"`
	Generation int64     `json:"generation,string"`
	Updated    time.Time `json:"updated"`
	MD5        string    `json:"md5Hash"`
	CRC32C     string    `json:"crc32c"`
}

func decode(resp *http.Response, v any) error {
	defer resp.Body.Close()
	return json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(v)
}

// stat returns an object's metadata.
func (s *Store) stat(ctx context.Context, name string) (object, error) {
	resp, err := s.do(ctx, func() (*http.Request, error) {
		return http.NewRequest("GET", s.objectURL(name)+"?fields=name,size,generation,updated,md5Hash,crc32c", nil)
	})
	if err != nil {
		return object{}, err
	}
	var o object
	if err := decode(resp, &o); err != nil {
		return object{}, fmt.Errorf("metadata of %s: %w", name, err)
	}
	return o, nil
}

// head returns the metadata of the blob h.
func (s *Store) head(ctx context.Context, h v1.Hash) (object, error) {
	k, err := s.key(h)
	if err != nil {
		return object{}, err
	}
	o, err := s.stat(ctx, k)
	if notFound(err) {
		return object{}, fmt.Errorf("%w: %s", layers.ErrBlobUnknown, h)
	}
	if err != nil {
		return object{}, fmt.Errorf("gcsstore: stat blob %s: %w", h, err)
	}
	return o, nil
}

// Stat returns the size of the blob h, from its metadata.
func (s *Store) Stat(ctx context.Context, h v1.Hash) (int64, error) {
	o, err := s.head(ctx, h)
	if err != nil {
		return 0, err
	}
	return o.Size, nil
}

// Open returns a reader of the blob h. Only its metadata is fetched now.
func (s *Store) Open(ctx context.Context, h v1.Hash) (io.ReadSeekCloser, error) {
	o, err := s.head(ctx, h)
	if err != nil {
		return nil, err
	}
	key := s.Key(h)
	return &objstore.Reader{
		Ctx: ctx, Pkg: "gcsstore", Key: key, Name: h.Hex,
		Size: o.Size, ModTime: o.Updated, Ver: strconv.FormatInt(o.Generation, 10),
		Open: func(ctx context.Context, off int64) (io.ReadCloser, error) {
			resp, err := s.media(ctx, key, o.Generation, off)
			if err != nil {
				return nil, err
			}
			return resp.Body, nil
		},
	}, nil
}

// media opens the bytes of generation gen of an object from off on (gen 0:
// the live one).
func (s *Store) media(ctx context.Context, name string, gen, off int64) (*http.Response, error) {
	u := s.objectURL(name) + "?alt=media"
	if gen != 0 {
		u += "&generation=" + strconv.FormatInt(gen, 10)
	}
	resp, err := s.do(ctx, func() (*http.Request, error) {
		req, err := http.NewRequest("GET", u, nil)
		if err == nil && off > 0 {
			req.Header.Set("Range", fmt.Sprintf("bytes=%d-", off))
		}
		// The bytes as stored, never transcoded.
		req.Header.Set("Accept-Encoding", "identity")
		return req, err
	})
	if err != nil {
		return nil, err
	}
	if off > 0 && resp.StatusCode != http.StatusPartialContent {
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s from %d: %s, not 206", name, off, resp.Status)
	}
	return resp, nil
}

// URL returns a URL of the blob h valid for expiry ([layers.URLStore]): a
// V4-signed URL with the service account's key, or, against an emulator
// without a key, the emulator's plain download URL. It does not check
// that the blob exists.
func (s *Store) URL(ctx context.Context, h v1.Hash, expiry time.Duration) (string, error) {
	k, err := s.key(h)
	if err != nil {
		return "", err
	}
	if s.signer == nil {
		if s.emulator {
			return s.base + "/download/storage/v1/b/" + s.bucket + "/o/" + url.PathEscape(k) + "?alt=media", nil
		}
		return "", errors.New("gcsstore: no service account key to sign URLs with (GOOGLE_APPLICATION_CREDENTIALS); serve blobs through nixery with NIXERY_BLOB_REDIRECT=false")
	}
	host, scheme := googleHost, "https"
	if s.emulator {
		u, _ := url.Parse(s.base)
		host, scheme = u.Host, u.Scheme
	}
	return s.signer.sign(scheme, host, s.bucket, k, time.Now(), expiry)
}

// escapeObject percent-encodes an object name for a path, '/' kept.
func escapeObject(name string) string {
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || strings.IndexByte("-._~/", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// sign returns a V4-signed GET URL (GOOG4-RSA-SHA256, path-style, only
// the host header signed) of the object, valid for expiry from now.
func (sa *serviceAccount) sign(scheme, host, bucket, object string, now time.Time, expiry time.Duration) (string, error) {
	if expiry < time.Second || expiry > maxExpiry {
		return "", fmt.Errorf("gcsstore: URL expiry %s: want 1s to 7 days", expiry)
	}
	now = now.UTC()
	stamp := now.Format("20060102T150405Z")
	date := now.Format("20060102")
	scopeStr := date + "/auto/storage/goog4_request"
	path := "/" + bucket + "/" + escapeObject(object)
	q := url.Values{}
	q.Set("X-Goog-Algorithm", "GOOG4-RSA-SHA256")
	q.Set("X-Goog-Credential", sa.email+"/"+scopeStr)
	q.Set("X-Goog-Date", stamp)
	q.Set("X-Goog-Expires", strconv.Itoa(int(expiry/time.Second)))
	q.Set("X-Goog-SignedHeaders", "host")
	// url.Values.Encode sorts by key and escapes as the canonical
	// query wants, except that it writes a space as '+'.
	query := strings.ReplaceAll(q.Encode(), "+", "%20")
	canonical := strings.Join([]string{"GET", path, query, "host:" + host + "\n", "host", "UNSIGNED-PAYLOAD"}, "\n")
	sum := sha256.Sum256([]byte(canonical))
	toSign := "GOOG4-RSA-SHA256\n" + stamp + "\n" + scopeStr + "\n" + hex.EncodeToString(sum[:])
	digest := sha256.Sum256([]byte(toSign))
	sig, err := rsa.SignPKCS1v15(rand.Reader, sa.key, crypto.SHA256, digest[:])
	if err != nil {
		return "", fmt.Errorf("gcsstore: sign URL: %w", err)
	}
	return scheme + "://" + host + path + "?" + query + "&X-Goog-Signature=" + hex.EncodeToString(sig), nil
}

// Create starts a new blob.
func (s *Store) Create(ctx context.Context) (layers.BlobWriter, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	w := &writer{s: s, ctx: ctx, md5: md5.New(), crc: crc32.New(crc32.MakeTable(crc32.Castagnoli))}
	w.Spool = objstore.NewSpool("gcsstore", s.spoolDir, s.chunk, io.MultiWriter(w.md5, w.crc))
	return w, nil
}

// writer writes one blob: in memory up to one chunk, then spooled to an
// unlinked local file (objstore.Spool), uploaded at Commit.
type writer struct {
	*objstore.Spool
	s   *Store
	ctx context.Context
	md5 hash.Hash
	crc hash.Hash32
}

// sums are an upload's declared checksums, as the JSON API writes them.
type sums struct{ md5, crc32c string }

func (w *writer) sums() sums {
	var c [4]byte
	binary.BigEndian.PutUint32(c[:], w.crc.Sum32())
	return sums{md5: base64.StdEncoding.EncodeToString(w.md5.Sum(nil)), crc32c: base64.StdEncoding.EncodeToString(c[:])}
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
	sum := w.sums()
	if f == nil {
		if err := w.s.putSmall(w.ctx, final, "application/octet-stream", buf, sum); err != nil {
			return fmt.Errorf("gcsstore: commit blob %s: %w", h, err)
		}
		return nil
	}
	if err := w.s.upload(w.ctx, final, f, w.Size(), sum); err != nil {
		return fmt.Errorf("gcsstore: commit blob %s: %w", h, err)
	}
	return nil
}

// Cancel discards what was written. Nothing has reached the bucket before
// Commit, so there is nothing to remove there.
func (w *writer) Cancel() error { return w.Close() }

// metadata is the JSON of a new object's metadata.
func metadata(name, contentType string, sum sums) []byte {
	b, _ := json.Marshal(map[string]string{"name": name, "contentType": contentType, "md5Hash": sum.md5, "crc32c": sum.crc32c})
	return b
}

// putSmall stores data under name with one multipart upload, its MD5 and
// CRC32C declared for GCS to check.
func (s *Store) putSmall(ctx context.Context, name, contentType string, data []byte, sum sums) error {
	meta := metadata(name, contentType, sum)
	resp, err := s.do(ctx, func() (*http.Request, error) {
		var body bytes.Buffer
		mw := multipart.NewWriter(&body)
		p, _ := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"application/json; charset=UTF-8"}})
		p.Write(meta)
		p, _ = mw.CreatePart(textproto.MIMEHeader{"Content-Type": {contentType}})
		p.Write(data)
		mw.Close()
		req, err := http.NewRequest("POST", s.base+"/upload/storage/v1/b/"+s.bucket+"/o?uploadType=multipart&fields=name,size,md5Hash", &body)
		if err == nil {
			req.Header.Set("Content-Type", "multipart/related; boundary="+mw.Boundary())
		}
		return req, err
	})
	if err != nil {
		return err
	}
	var o object
	if err := decode(resp, &o); err != nil {
		return fmt.Errorf("upload of %s: %w", name, err)
	}
	if o.Size != int64(len(data)) || o.MD5 != sum.md5 {
		return fmt.Errorf("upload of %s: stored %d bytes with MD5 %s, sent %d with %s", name, o.Size, o.MD5, len(data), sum.md5)
	}
	return nil
}

// upload uploads size bytes of f to name as a resumable upload, one chunk
// at a time, each streamed from f. Until its last byte is in, a resumable
// upload is not an object: nothing is visible under name before.
func (s *Store) upload(ctx context.Context, name string, f io.ReaderAt, size int64, sum sums) error {
	meta := metadata(name, "application/octet-stream", sum)
	resp, err := s.do(ctx, func() (*http.Request, error) {
		req, err := http.NewRequest("POST", s.base+"/upload/storage/v1/b/"+s.bucket+"/o?uploadType=resumable", bytes.NewReader(meta))
		if err == nil {
			req.Header.Set("Content-Type", "application/json; charset=UTF-8")
			req.Header.Set("X-Upload-Content-Type", "application/octet-stream")
			req.Header.Set("X-Upload-Content-Length", strconv.FormatInt(size, 10))
		}
		return req, err
	})
	if err != nil {
		return fmt.Errorf("start upload: %w", err)
	}
	resp.Body.Close()
	session := resp.Header.Get("Location")
	if session == "" {
		return errors.New("start upload: no session URI in the answer")
	}
	if err := s.chunks(ctx, session, name, f, size, sum); err != nil {
		// Cancel the session (GCS answers 499), so that it is not
		// kept for a week.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if req, rerr := http.NewRequestWithContext(actx, "DELETE", session, nil); rerr == nil {
			if r, rerr := s.hc.Do(req); rerr == nil {
				r.Body.Close()
			}
		}
		return err
	}
	return nil
}

// chunkRetries is how many times in a row a resumable upload asks where
// it stands and goes on after a chunk failed (a network error, 429 or
// 5xx) before it gives up.
const chunkRetries = 4

// chunks sends the bytes of a resumable upload session. A chunk that fails
// is not sent again blindly, as the server may hold some of it: the
// session is asked what it holds (an empty PUT with "Content-Range: bytes
// */size", answered like a chunk), and the upload goes on from there.
func (s *Store) chunks(ctx context.Context, session, name string, f io.ReaderAt, size int64, sum sums) error {
	off := int64(0)
	stalls, failures := 0, 0
	query := false // the last request failed: ask where the upload stands
	for {
		n := min(int64(s.chunk), size-off)
		var body io.Reader = io.NewSectionReader(f, off, n)
		span := fmt.Sprintf("%d-%d", off, off+n-1)
		if query {
			n, body, span = 0, http.NoBody, "*"
		}
		req, err := http.NewRequestWithContext(ctx, "PUT", session, body)
		if err != nil {
			return err
		}
		req.ContentLength = n
		req.Header.Set("Content-Range", fmt.Sprintf("bytes %s/%d", span, size))
		resp, err := s.hc.Do(req)
		if err == nil && retryable(resp.StatusCode) {
			err = responseError(resp)
			resp.Body.Close()
		}
		if err != nil {
			if ctx.Err() != nil || failures >= chunkRetries {
				return fmt.Errorf("upload %s at %d of %d bytes: %w", name, off, size, err)
			}
			failures++
			if err := pause(ctx, failures); err != nil {
				return fmt.Errorf("upload %s at %d of %d bytes: %w", name, off, size, err)
			}
			query = true
			continue
		}
		asked := query
		query = false
		if resp.StatusCode/100 != 2 && resp.StatusCode != http.StatusPermanentRedirect {
			err := responseError(resp)
			resp.Body.Close()
			return fmt.Errorf("upload %s at %d of %d bytes: %w", name, off, size, err)
		}
		if resp.StatusCode != http.StatusPermanentRedirect {
			var o object
			if err := decode(resp, &o); err != nil {
				return fmt.Errorf("finish upload of %s: %w", name, err)
			}
			if o.Size != size || o.MD5 != sum.md5 {
				// GCS checks the declared MD5 before it finalizes;
				// an emulator may not. Never leave a wrong object
				// (that generation only: another server may have
				// written the right one since).
				if o.Generation != 0 {
					s.deleteGeneration(context.WithoutCancel(ctx), name, o.Generation)
				}
				return fmt.Errorf("upload of %s: stored %d bytes with MD5 %s, sent %d with %s", name, o.Size, o.MD5, size, sum.md5)
			}
			return nil
		}
		resp.Body.Close()
		// 308: the server has bytes 0-N ("Range: bytes=0-N"), or none.
		next := int64(0)
		if r := resp.Header.Get("Range"); r != "" {
			end, err := strconv.ParseInt(r[strings.LastIndexByte(r, '-')+1:], 10, 64)
			if err != nil {
				return fmt.Errorf("upload %s: bad Range %q in the answer", name, r)
			}
			next = end + 1
		}
		if next >= size {
			return fmt.Errorf("upload %s: the server has all %d bytes but did not finish", name, size)
		}
		switch {
		case next > off:
			stalls, failures = 0, 0
		case asked: // the failed chunk did not land: send it again
		default: // a chunk that the server answered but did not take
			if stalls++; stalls > 3 {
				return fmt.Errorf("upload %s: no progress at %d of %d bytes", name, next, size)
			}
		}
		off = next
	}
}

// deleteGeneration deletes generation gen of an object (0: the live one);
// a missing object is no error.
func (s *Store) deleteGeneration(ctx context.Context, name string, gen int64) error {
	u := s.objectURL(name)
	if gen != 0 {
		u += "?ifGenerationMatch=" + strconv.FormatInt(gen, 10)
	}
	resp, err := s.do(ctx, func() (*http.Request, error) { return http.NewRequest("DELETE", u, nil) })
	if notFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// list calls fn for every object under prefix, pageSize at a time (0: the
// API's default). It returns fn's first error as it is, and its own
// failures as "gcsstore: list what: ...".
func (s *Store) list(ctx context.Context, prefix string, pageSize int, what string, fn func(object) error) error {
	token := ""
	for {
		q := url.Values{}
		q.Set("prefix", prefix)
		q.Set("fields", "items(name,size,generation,updated),nextPageToken")
		if pageSize > 0 {
			q.Set("maxResults", strconv.Itoa(pageSize))
		}
		if token != "" {
			q.Set("pageToken", token)
		}
		u := s.base + "/storage/v1/b/" + s.bucket + "/o?" + q.Encode()
		resp, err := s.do(ctx, func() (*http.Request, error) { return http.NewRequest("GET", u, nil) })
		if err != nil {
			return fmt.Errorf("gcsstore: list %s: %w", what, err)
		}
		var page struct {
			Items         []object `json:"items"`
			NextPageToken string   `json:"nextPageToken"`
		}
		if err := decode(resp, &page); err != nil {
			return fmt.Errorf("gcsstore: list %s: %w", what, err)
		}
		for _, o := range page.Items {
			if err := fn(o); err != nil {
				return err
			}
		}
		if page.NextPageToken == "" {
			return nil
		}
		token = page.NextPageToken
	}
}

// List calls fn for every committed blob.
func (s *Store) List(ctx context.Context, fn func(layers.BlobInfo) error) error {
	return s.list(ctx, s.keys.Blobs(), listPage, "blobs", func(o object) error {
		h, ok := s.keys.BlobOf(o.Name)
		if !ok {
			return nil
		}
		return fn(layers.BlobInfo{Digest: h, Size: o.Size, ModTime: o.Updated})
	})
}

// Delete removes the blob h. A reader that has it open fails on its next
// GET.
func (s *Store) Delete(ctx context.Context, h v1.Hash) error {
	if _, err := s.head(ctx, h); err != nil {
		return err
	}
	if err := s.deleteGeneration(ctx, s.Key(h), 0); err != nil {
		return fmt.Errorf("gcsstore: delete blob %s: %w", h, err)
	}
	return nil
}

// Quarantine copies the blob h to quarantine/ on the server (a rewrite),
// where it stays for a week, and deletes it: the generation it copied,
// not a good blob written meanwhile.
func (s *Store) Quarantine(ctx context.Context, h v1.Hash) error {
	o, err := s.head(ctx, h)
	if err != nil {
		return err
	}
	k := s.Key(h)
	q := s.keys.Quarantine(h)
	if err := s.rewrite(ctx, k, o.Generation, q); err != nil {
		return fmt.Errorf("gcsstore: quarantine %s: %w", h, err)
	}
	u := s.objectURL(k) + "?ifGenerationMatch=" + strconv.FormatInt(o.Generation, 10)
	resp, err := s.do(ctx, func() (*http.Request, error) { return http.NewRequest("DELETE", u, nil) }, http.StatusNotFound, http.StatusPreconditionFailed)
	if err != nil {
		return fmt.Errorf("gcsstore: quarantine %s: %w", h, err)
	}
	resp.Body.Close()
	return nil
}

// rewrite copies generation gen of from to to on the server, in as many
// calls as GCS needs.
func (s *Store) rewrite(ctx context.Context, from string, gen int64, to string) error {
	token := ""
	for {
		q := url.Values{}
		q.Set("sourceGeneration", strconv.FormatInt(gen, 10))
		if token != "" {
			q.Set("rewriteToken", token)
		}
		u := s.objectURL(from) + "/rewriteTo/b/" + s.bucket + "/o/" + url.PathEscape(to) + "?" + q.Encode()
		resp, err := s.do(ctx, func() (*http.Request, error) {
			req, err := http.NewRequest("POST", u, strings.NewReader("{}"))
			if err == nil {
				req.Header.Set("Content-Type", "application/json")
			}
			return req, err
		})
		if err != nil {
			return err
		}
		var r struct {
			Done         bool   `json:"done"`
			RewriteToken string `json:"rewriteToken"`
		}
		if err := decode(resp, &r); err != nil {
			return err
		}
		if r.Done {
			return nil
		}
		if r.RewriteToken == "" {
			return errors.New("rewrite not done and no token to go on")
		}
		token = r.RewriteToken
	}
}

// cleanup removes quarantined blobs older than a week. Failures are
// ignored: the next start tries again.
func (s *Store) cleanup(ctx context.Context) {
	var old []string
	s.list(ctx, s.keys.Quarantined(), listPage, "quarantine", func(o object) error {
		if time.Since(o.Updated) > objstore.QuarantineAge {
			old = append(old, o.Name)
		}
		return nil
	})
	for _, name := range old {
		s.deleteGeneration(ctx, name, 0)
	}
}

// putObject stores a small object.
func (s *Store) putObject(ctx context.Context, name, contentType string, data []byte) error {
	c := crc32.Checksum(data, crc32.MakeTable(crc32.Castagnoli))
	var cb [4]byte
	binary.BigEndian.PutUint32(cb[:], c)
	m := md5.Sum(data)
	return s.putSmall(ctx, name, contentType, data, sums{md5: base64.StdEncoding.EncodeToString(m[:]), crc32c: base64.StdEncoding.EncodeToString(cb[:])})
}

// getObject returns a small object's bytes; a missing one is an error
// matching fs.ErrNotExist.
func (s *Store) getObject(ctx context.Context, name string) ([]byte, error) {
	resp, err := s.media(ctx, name, 0, 0)
	if notFound(err) {
		return nil, fs.ErrNotExist
	}
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxSmall+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxSmall {
		return nil, fmt.Errorf("larger than %d bytes", maxSmall)
	}
	return b, nil
}

// The image records of package images (images.RecordStore), under
// index/<key>.json, so that every server on the bucket sees every image.

// PutRecord stores the record of the image key.
func (s *Store) PutRecord(ctx context.Context, key string, data []byte) error {
	k, err := s.keys.Record(key)
	if err != nil {
		return err
	}
	if err := s.putObject(ctx, k, "application/json", data); err != nil {
		return fmt.Errorf("gcsstore: put record %s: %w", key, err)
	}
	return nil
}

// GetRecord returns the record of the image key, or an error matching
// fs.ErrNotExist.
func (s *Store) GetRecord(ctx context.Context, key string) ([]byte, error) {
	k, err := s.keys.Record(key)
	if err != nil {
		return nil, err
	}
	b, err := s.getObject(ctx, k)
	if err != nil {
		return nil, fmt.Errorf("gcsstore: get record %s: %w", key, err)
	}
	return b, nil
}

// ListRecords calls fn with the key of every record.
func (s *Store) ListRecords(ctx context.Context, fn func(key string) error) error {
	return s.list(ctx, s.keys.Records(), listPage, "records", func(o object) error {
		key, ok := s.keys.RecordOf(o.Name)
		if !ok {
			return nil
		}
		return fn(key)
	})
}

// DeleteRecord removes the record of the image key; a missing one is not
// an error.
func (s *Store) DeleteRecord(ctx context.Context, key string) error {
	k, err := s.keys.Record(key)
	if err != nil {
		return err
	}
	if err := s.deleteGeneration(ctx, k, 0); err != nil {
		return fmt.Errorf("gcsstore: delete record %s: %w", key, err)
	}
	return nil
}

// Shared state (images.StateStore): small objects under state/<name> that
// every server on the bucket sees, with GCS's time of their last write.

// PutState stores data as the state object name.
func (s *Store) PutState(ctx context.Context, name string, data []byte) error {
	k, err := s.keys.State(name)
	if err != nil {
		return err
	}
	if len(data) > maxSmall {
		return fmt.Errorf("gcsstore: state %s: %d bytes, more than %d", name, len(data), maxSmall)
	}
	if err := s.putObject(ctx, k, "application/octet-stream", data); err != nil {
		return fmt.Errorf("gcsstore: put state %s: %w", name, err)
	}
	return nil
}

// GetState returns the state object name and the time it was last
// written, or an error matching fs.ErrNotExist.
func (s *Store) GetState(ctx context.Context, name string) ([]byte, time.Time, error) {
	k, err := s.keys.State(name)
	if err != nil {
		return nil, time.Time{}, err
	}
	// The metadata, for the time of the write at the precision that
	// ListState gives, then that generation's bytes.
	o, err := s.stat(ctx, k)
	if notFound(err) {
		err = fs.ErrNotExist
	}
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("gcsstore: get state %s: %w", name, err)
	}
	resp, err := s.media(ctx, k, o.Generation, 0)
	if notFound(err) {
		err = fs.ErrNotExist // deleted or replaced in between
	}
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("gcsstore: get state %s: %w", name, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxSmall+1))
	if err == nil && len(b) > maxSmall {
		err = fmt.Errorf("larger than %d bytes", maxSmall)
	}
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("gcsstore: get state %s: %w", name, err)
	}
	return b, o.Updated, nil
}

// ListState calls fn with the name (without "state/") and the time of the
// last write of every state object whose name starts with prefix.
func (s *Store) ListState(ctx context.Context, prefix string, fn func(name string, mod time.Time) error) error {
	return s.list(ctx, s.keys.States()+prefix, listPage, "state "+prefix, func(o object) error {
		name, ok := s.keys.StateOf(o.Name)
		if !ok {
			return nil
		}
		return fn(name, o.Updated)
	})
}

// DeleteState removes the state object name; a missing one is not an
// error.
func (s *Store) DeleteState(ctx context.Context, name string) error {
	k, err := s.keys.State(name)
	if err != nil {
		return err
	}
	if err := s.deleteGeneration(ctx, k, 0); err != nil {
		return fmt.Errorf("gcsstore: delete state %s: %w", name, err)
	}
	return nil
}
