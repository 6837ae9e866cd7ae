package nixery_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/nixery-go/nixery"
	"github.com/nixery-go/nixery/images"
)

// An embedding server: the registry API under /v2/ and the server's
// metrics, next to a handler of its own. (Mounted at "/", the Server also
// serves its landing page, build events and health checks.)
func Example() {
	dir, _ := os.MkdirTemp("", "nixery-example-")
	defer os.RemoveAll(dir)

	srv, err := nixery.New(context.Background(), nixery.WithStorage(dir), nixery.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	mux := http.NewServeMux()
	mux.Handle("/v2/", srv)
	mux.Handle("/metrics", srv.Metrics())
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") })
	ts := httptest.NewServer(mux) // or http.ListenAndServe(":8080", mux)
	defer ts.Close()

	for _, p := range []string{"/hello", "/metrics", "/v2/"} {
		resp, err := http.Get(ts.URL + p)
		if err != nil {
			log.Fatal(err)
		}
		resp.Body.Close()
		fmt.Println(p, resp.Status)
	}
	// Output:
	// /hello 200 OK
	// /metrics 200 OK
	// /v2/ 200 OK
}

// An image without HTTP: the v1.Image that `docker pull HOST/curl/jq`
// would get, from the same caches, built with the real Nix.
func ExampleServer_Image() {
	dir, _ := os.MkdirTemp("", "nixery-example-")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	srv, err := nixery.New(ctx, nixery.WithStorage(dir), nixery.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()

	img, err := srv.Image(ctx, "curl/jq")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("valid:", validate.Image(img) == nil)

	// The registry serves the same image.
	ts := httptest.NewServer(srv)
	defer ts.Close()
	ref, _ := name.ParseReference(ts.Listener.Addr().String() + "/curl/jq")
	served, err := remote.Image(ref)
	if err != nil {
		log.Fatal(err)
	}
	a, _ := img.Digest()
	b, _ := served.Digest()
	fmt.Println("same digest as served:", a == b)
	// Output:
	// valid: true
	// same digest as served: true
}

// A build's progress: the phases of the events a cold build publishes
// (the same events /events streams), then its result. An image found in
// the caches has no build, so no events.
func ExampleServer_Listen() {
	dir, _ := os.MkdirTemp("", "nixery-example-")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	srv, err := nixery.New(ctx, nixery.WithStorage(dir), nixery.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()

	var mu sync.Mutex
	var phases []images.Phase
	var last images.Event
	srv.Listen(func(e images.Event) {
		mu.Lock()
		defer mu.Unlock()
		if len(phases) == 0 || phases[len(phases)-1] != e.Phase {
			phases = append(phases, e.Phase)
		}
		last = e
	})
	for range 2 { // the second time from the caches
		if _, err := srv.Image(ctx, "hello"); err != nil {
			log.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	fmt.Println(phases)
	fmt.Println(last.Name, last.Layers > 0, last.Build)
	// Output:
	// [queued evaluating realising grouping compressing writing done]
	// hello true 1
}
