package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/nixery-go/nixery/internal/testutil"
)

// artifactDir is where tests leave files for people to look at:
// $NIXERY_TEST_ARTIFACTS if set, else a temporary directory of the test.
func artifactDir(t *testing.T) string {
	if d := os.Getenv("NIXERY_TEST_ARTIFACTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

// chromium starts a headless Chromium (Debian's chromium package) and
// returns its chromedp context.
func chromium(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath("chromium"),
		chromedp.Headless,
		chromedp.NoSandbox, // the tests run as root
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1000),
	)
	actx, cancel := chromedp.NewExecAllocator(t.Context(), opts...)
	t.Cleanup(cancel)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("starting chromium: %v", err)
	}
	return ctx
}

// within runs f with a context of ctx bounded by d.
func within[T any](ctx context.Context, d time.Duration, a chromedp.Action[T]) (T, error) {
	c, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return chromedp.Run(c, a)
}

func saveScreenshot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	png, err := within(ctx, 30*time.Second, chromedp.FullScreenshot(100))
	if err != nil {
		t.Errorf("screenshot %s: %v", name, err)
		return
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Error(err)
		return
	}
	t.Logf("screenshot: %s (%d bytes)", p, len(png))
}

// TestPageInChromiumE2E loads the landing page in a real headless
// Chromium: it shows how to pull from this host and the package list, the
// search box filters it, and a cold build appears among the builds in
// progress and follows its phases (over /events) to done; then the image's
// page lists its layers. Screenshots are saved as test artefacts.
func TestPageInChromiumE2E(t *testing.T) {
	testutil.RequireTools(t, "nix-build", "nix-store", "chromium")
	srv := testutil.ServeNixery(t, testutil.NixeryOptions{})
	dir := artifactDir(t)
	// The package list is read on the first visit; wait until the page
	// has it.
	deadline := time.Now().Add(5 * time.Minute)
	for {
		r := testutil.Do(t, srv.Client, "GET", srv.URL("/"), nil)
		if r.Status != 200 {
			t.Fatalf("GET / = %d", r.Status)
		}
		if strings.Contains(string(r.Body), `id="package-list"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the page has no package list: %s", r.Body)
		}
		time.Sleep(200 * time.Millisecond)
	}

	ctx := chromium(t)
	if _, err := within(ctx, time.Minute, chromedp.Navigate(srv.URL("/"))); err != nil {
		t.Fatal(err)
	}
	usage, err := within(ctx, 30*time.Second, chromedp.Text(chromedp.CSS("#usage")))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"docker pull " + srv.Addr + "/shell/curl/jq", "shell: adds bashInteractive, coreutils, moreutils, nano", "arm64"} {
		if !strings.Contains(usage, want) {
			t.Errorf("the usage lacks %q:\n%s", want, usage)
		}
	}
	attrs, err := within(ctx, 30*time.Second, chromedp.Evaluate[[]string](
		`Array.from(document.querySelectorAll("#package-list tbody tr td:first-child")).map(td => td.textContent)`))
	if err != nil {
		t.Fatal(err)
	}
	if len(attrs) < 50 || !slices.Contains(attrs, "hello") || !slices.Contains(attrs, "jq") {
		t.Errorf("the package list has %d attributes: %v", len(attrs), attrs)
	}
	if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.CSS("#search"), "zst")); err != nil {
		t.Fatal(err)
	}
	shown, err := within(ctx, 10*time.Second, chromedp.Evaluate[[]string](
		`Array.from(document.querySelectorAll("#package-list tbody tr:not([hidden]) td:first-child")).map(td => td.textContent)`))
	if err != nil || !slices.Equal(shown, []string{"zstd"}) {
		t.Errorf("searching for zst shows %v (%v)", shown, err)
	}
	if _, err := within(ctx, 30*time.Second, chromedp.WaitVisible(chromedp.CSS(`#live-status[data-live="1"]`))); err != nil {
		t.Fatalf("the page does not follow /events: %v", err)
	}

	// A cold build: its row appears and goes through its phases to done.
	built := make(chan error, 1)
	go func() {
		bctx, cancel := context.WithTimeout(t.Context(), buildTimeout)
		defer cancel()
		_, err := testutil.GetManifest(bctx, srv.Client, srv.URL("/v2/shell/python3/manifests/latest"), mediaDockerManifest)
		built <- err
	}()
	var phases []string
	midShot := false
	end := time.Now().Add(buildTimeout)
	for time.Now().Before(end) {
		raw, err := within(ctx, 10*time.Second, chromedp.Evaluate[[]byte](
			`Array.from(document.querySelectorAll("#active-builds tbody tr")).map(tr => ({name: tr.cells[0].textContent, phase: tr.dataset.phase || "", status: tr.cells[1].textContent}))`))
		if err != nil {
			t.Fatal(err)
		}
		var rows []struct{ Name, Phase, Status string }
		json.Unmarshal(raw, &rows)
		var phase string
		for _, r := range rows {
			if strings.Contains(r.Name, "python3") {
				phase = r.Phase
			}
		}
		if phase != "" && (len(phases) == 0 || phases[len(phases)-1] != phase) {
			phases = append(phases, phase)
		}
		if phase == "compressing" && !midShot {
			midShot = true
			saveScreenshot(t, ctx, dir, "page-building.png")
		}
		if phase == "done" || phase == "failed" {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := <-built; err != nil {
		t.Fatal(err)
	}
	t.Logf("phases the page showed: %v", phases)
	if len(phases) < 2 || phases[len(phases)-1] != "done" {
		t.Fatalf("the page showed the phases %v, want some and then done", phases)
	}
	saveScreenshot(t, ctx, dir, "page-done.png")

	// After a reload the build is among the recent builds, with a link to
	// the image's page.
	if _, err := within(ctx, time.Minute, chromedp.Navigate(srv.URL("/"))); err != nil {
		t.Fatal(err)
	}
	href, err := within(ctx, 30*time.Second, chromedp.Evaluate[string](`document.querySelector("#recent-builds a").getAttribute("href")`))
	if err != nil || !strings.HasPrefix(href, "/image/") {
		t.Fatalf("no recent build links to its image: %q %v", href, err)
	}
	if _, err := within(ctx, time.Minute, chromedp.Navigate(srv.URL(href))); err != nil {
		t.Fatal(err)
	}
	paths, err := within(ctx, 30*time.Second, chromedp.Evaluate[int](`document.querySelectorAll("#layers ul.paths li").length`))
	if err != nil || paths < 3 {
		t.Errorf("the image page lists %d store paths (%v)", paths, err)
	}
	text, _ := within(ctx, 30*time.Second, chromedp.Text(chromedp.CSS("#image")))
	if !strings.Contains(text, "/nix/store/") || !strings.Contains(text, "python3") {
		t.Errorf("the image page:\n%s", text)
	}
	saveScreenshot(t, ctx, dir, "image-page.png")
}
