// Package registry is the HTTP layer of nixery: it serves the pull side of
// the OCI distribution API as an [http.Handler] over an [Images], which
// builds the images (package images' Builder is one). It owns routing,
// content negotiation, headers, and rendering errors as the specification's
// JSON; it knows nothing of Nix or of how images are made.
//
//	reg := registry.New(builder)
//	mux.Handle("/v2/", reg)
//
// # Routes
//
// Paths are parsed from their end, because a repository name contains
// slashes (net/http's ServeMux cannot route /v2/{name...}/blobs/{digest}):
//
//	GET  /v2/                          200 {} with Docker-Distribution-API-Version: registry/2.0
//	GET  /v2/<name>/manifests/<tag>    the image's manifest, built on demand
//	GET  /v2/<name>/manifests/<digest> a manifest built before, by digest
//	GET  /v2/<name>/blobs/<digest>     a layer, config or manifest, with Range support
//	GET  /v2/<name>/tags/list          {"name":<name>,"tags":["latest"]}
//	GET  /v2/<name>/referrers/<digest> an OCI index of the manifests whose subject is <digest>
//	GET  /v2/<name>/manifests/sha256-<hex>  the same index (the referrers tag schema)
//
// The referrers routes exist when the Images are [ReferrerImages]. The
// index is empty for a digest without referrers (never a 404, as the
// specification asks); ?artifactType= keeps one artifact type and the
// answer says so in OCI-Filters-Applied. The tag schema's tag of a digest
// without referrers is MANIFEST_UNKNOWN.
//
// HEAD works wherever GET does and sends the same headers (Content-Type,
// Content-Length, Docker-Content-Digest) without a body. Every other method
// is refused with 405 UNSUPPORTED: images are built, not pushed, and never
// deleted. Paths outside these routes get 404 NOT_FOUND.
//
// Names must follow the distribution specification's repository-name
// grammar (relaxed to admit upper-case letters) and be at most
// [DefaultMaxNameLength] characters long; what the components mean is for
// the [Images]. Digests must be sha256 with 64 lower-case hex digits
// before they reach it. The tag list names "latest" for every well-formed
// name without building anything (git package sources also accept refs and
// commits as tags, which cannot be listed).
//
// # Content negotiation
//
// An image has one manifest per format (Docker v2 schema 2 and OCI); the
// Accept header picks one by media type and q-value, and a client that
// names none of them gets the first (Docker's). Manifests by tag carry
// Vary: Accept.
//
// When the [Images] have indexes ([IndexImages]), a request by tag whose
// Accept lists a Docker manifest list or an OCI image index gets an index
// of the format it prefers (by q-value, the first listed on a tie): the
// Docker manifest list (of Docker manifests) or the OCI index (of OCI
// manifests), of one image per platform. A client that accepts only image
// manifests gets the image of the server's own platform, as before; a
// name that denotes one platform (arm64/...) gets its image either way.
//
// # Errors
//
// Errors are the specification's JSON body,
// {"errors":[{"code":...,"message":...,"detail":...}]}, with the status
// declared for each code in one place (see [ErrorCode]); how errors from
// the [Images] map to codes is decided in one function, by the standard
// errors they match (fs.ErrNotExist, fs.ErrInvalid, errors.ErrUnsupported,
// context.DeadlineExceeded):
//
//	NAME_INVALID      400  malformed names, or names that name no image
//	MANIFEST_UNKNOWN  404  unknown packages (the message lists all of them), a
//	                       system the source cannot build for, an unknown or
//	                       malformed tag, a digest never served
//	BLOB_UNKNOWN      404  a blob not in the store
//	DIGEST_INVALID    400  anything but sha256 and 64 lower-case hex digits
//	UNSUPPORTED       405  pushes, deletes, other methods
//	NOT_FOUND         404  paths outside the API
//	UNKNOWN           500  a failed build
//	UNAVAILABLE       503  a build that ran out of time, or a server too
//	                       busy to build (an error with a [RetryAfter])
//	TOOMANYREQUESTS   429  a client over its limit of cold requests
//
// Messages are the errors' own text, with bytes that are not printable
// escaped. Every 503 and 429 carries Retry-After: the delay of the error's
// [RetryAfter], or [DefaultRetryAfter].
//
// # Limits
//
// Writing a response has a deadline of [WithWriteTimeout] from when it
// starts; blobs are sent in chunks (still with sendfile), each under a new
// deadline, and a chunk that times out after some progress gets another,
// so a slow client gets the whole blob while one that stops reading loses
// its connection. When the [Images] can answer cached images without
// building ([CachedImages]), the other images a client asks for by tag
// count against its limit ([WithMaxClientBuilds]) while it waits for them
// (requests for the same name and tag once); cached images and requests by
// digest are never limited. The server's
// own limits (connections, header sizes) belong to its http.Server.
//
// # Logs
//
// The handler logs through log/slog, one line per request, formatted by a
// goroutine of its own after the response has been sent, with the path cut
// to 256 bytes:
//
//	level=INFO msg=request method=GET path=/v2/shell/manifests/latest status=200 bytes=1234 duration=85µs
//
// A failed request adds a "request failed" line with the cause (at Error
// level for 5xx, at Debug for a 503 of a server too busy to build, whose
// request line says enough), or "request cancelled" when the client went
// away first.
package registry
