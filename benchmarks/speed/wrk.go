package speed

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// ErrWrkOutput is wrapped by errors about output of wrk that cannot be
// parsed.
var ErrWrkOutput = errors.New("speed: cannot parse wrk output")

// WrkOptions configure the wrk load generator: one run ([Wrk]) or a side
// by side comparison ([Compare], [ManifestLatency]).
type WrkOptions struct {
	// URL is the address to load, on 127.0.0.1.
	URL string
	// Connections is wrk's -c; 0 means 64.
	Connections int
	// Threads is wrk's -t; 0 means 2 (the machine's cores).
	Threads int
	// Duration is wrk's -d, rounded to whole seconds; 0 means 5 s.
	Duration time.Duration
	// Timeout is wrk's --timeout: a response slower than this counts as
	// a timeout (a socket error) and its latency is not recorded; 0 means
	// 10 s.
	Timeout time.Duration
	// Header holds request headers sent with every request (wrk -H).
	Header http.Header
	// Warmup, when positive, makes a comparison first load each side once
	// for this long (whole seconds, at least 1) and discard the figures.
	// [Wrk] ignores it.
	Warmup time.Duration
	// Rounds is how many times a comparison loads each side, alternating
	// which goes first; 0 means 1. [Wrk] ignores it.
	Rounds int
}

// WrkResult is what wrk reported for one run.
type WrkResult struct {
	// Requests is the number of requests completed.
	Requests int64
	// RequestsPerSec is wrk's Requests/sec.
	RequestsPerSec float64
	// BytesPerSec is wrk's Transfer/sec, in bytes (wrk's units are
	// powers of 1024).
	BytesPerSec float64
	// P50, P75, P90 and P99 are the latency percentiles of wrk's
	// --latency distribution.
	P50, P75, P90, P99 time.Duration
	// NonSuccess counts responses with a status outside 2xx and 3xx.
	NonSuccess int64
	// SocketErrors sums wrk's connect, read, write and timeout errors.
	SocketErrors int64
	// Connections and Duration are the settings used; the Duration of a
	// comparison's side is the sum over its rounds.
	Connections int
	Duration    time.Duration
}

// Wrk runs wrk (without a Lua script) against opts.URL and parses its
// --latency report. wrk must be in PATH (Debian: apt-get install wrk).
func Wrk(ctx context.Context, opts WrkOptions) (*WrkResult, error) {
	if opts.Connections <= 0 {
		opts.Connections = 64
	}
	if opts.Threads <= 0 {
		opts.Threads = 2
	}
	if opts.Threads > opts.Connections {
		opts.Threads = opts.Connections
	}
	if opts.Duration <= 0 {
		opts.Duration = 5 * time.Second
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	secs := wholeSeconds(opts.Duration)
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		return nil, fmt.Errorf("speed: wrk not found in PATH (Debian: apt-get install wrk): %w", err)
	}
	args := []string{"-c", strconv.Itoa(opts.Connections), "-t", strconv.Itoa(opts.Threads),
		"-d", strconv.Itoa(secs) + "s", "--latency", "--timeout", strconv.Itoa(wholeSeconds(opts.Timeout)) + "s"}
	for k, vs := range opts.Header {
		for _, v := range vs {
			args = append(args, "-H", k+": "+v)
		}
	}
	args = append(args, opts.URL)
	cmd := exec.CommandContext(ctx, wrk, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("speed: wrk %s: %w: %s", opts.URL, err, strings.TrimSpace(stderr.String()))
	}
	res, err := ParseWrk(stdout.Bytes())
	if err != nil {
		return nil, err
	}
	res.Connections, res.Duration = opts.Connections, time.Duration(secs)*time.Second
	return res, nil
}

// wholeSeconds rounds d to whole seconds, at least 1, as wrk takes them.
func wholeSeconds(d time.Duration) int {
	return max(1, int(d.Round(time.Second)/time.Second))
}

// ParseWrk parses the report wrk 4 prints with --latency:
//
//	  Latency Distribution
//	     50%    1.06ms
//	     ...
//	  104775 requests in 2.01s, 111.81MB read
//	  Socket errors: connect 0, read 3, write 0, timeout 2
//	  Non-2xx or 3xx responses: 50722
//	Requests/sec:  52170.55
//	Transfer/sec:     55.67MB
//
// The percentiles, request count, Requests/sec and Transfer/sec are
// required.
func ParseWrk(out []byte) (*WrkResult, error) {
	r := &WrkResult{}
	var have struct{ p50, p75, p90, p99, reqs, rps, tps bool }
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		f := strings.Fields(line)
		switch {
		case len(f) == 2 && strings.HasSuffix(f[0], "%"):
			d, err := parseWrkDuration(f[1])
			if err != nil {
				return nil, err
			}
			switch f[0] {
			case "50%":
				r.P50, have.p50 = d, true
			case "75%":
				r.P75, have.p75 = d, true
			case "90%":
				r.P90, have.p90 = d, true
			case "99%":
				r.P99, have.p99 = d, true
			}
		case len(f) >= 3 && f[1] == "requests" && f[2] == "in":
			n, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("%w: %q", ErrWrkOutput, line)
			}
			r.Requests, have.reqs = n, true
		case strings.HasPrefix(line, "Socket errors:"):
			for _, part := range strings.Split(strings.TrimPrefix(line, "Socket errors:"), ",") {
				kv := strings.Fields(part)
				if len(kv) != 2 {
					return nil, fmt.Errorf("%w: %q", ErrWrkOutput, line)
				}
				n, err := strconv.ParseInt(kv[1], 10, 64)
				if err != nil {
					return nil, fmt.Errorf("%w: %q", ErrWrkOutput, line)
				}
				r.SocketErrors += n
			}
		case strings.HasPrefix(line, "Non-2xx or 3xx responses:"):
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimPrefix(line, "Non-2xx or 3xx responses:")), 10, 64)
			if err != nil {
				return nil, fmt.Errorf("%w: %q", ErrWrkOutput, line)
			}
			r.NonSuccess = n
		case strings.HasPrefix(line, "Requests/sec:"):
			v, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimPrefix(line, "Requests/sec:")), 64)
			if err != nil {
				return nil, fmt.Errorf("%w: %q", ErrWrkOutput, line)
			}
			r.RequestsPerSec, have.rps = v, true
		case strings.HasPrefix(line, "Transfer/sec:"):
			v, err := parseWrkBytes(strings.TrimSpace(strings.TrimPrefix(line, "Transfer/sec:")))
			if err != nil {
				return nil, err
			}
			r.BytesPerSec, have.tps = v, true
		}
	}
	if !(have.p50 && have.p75 && have.p90 && have.p99 && have.reqs && have.rps && have.tps) {
		return nil, fmt.Errorf("%w: missing latency distribution or totals (was --latency given?)", ErrWrkOutput)
	}
	return r, nil
}

// parseWrkDuration parses wrk's time format: a number with unit us, ms, s,
// m or h.
func parseWrkDuration(s string) (time.Duration, error) {
	units := []struct {
		suffix string
		unit   float64
	}{{"us", 1e3}, {"ms", 1e6}, {"s", 1e9}, {"m", 60e9}, {"h", 3600e9}}
	for _, u := range units {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			v, err := strconv.ParseFloat(num, 64)
			if err != nil || v < 0 {
				break
			}
			return time.Duration(v * u.unit), nil
		}
	}
	return 0, fmt.Errorf("%w: duration %q", ErrWrkOutput, s)
}

// parseWrkBytes parses wrk's byte format: a number with unit B, KB, MB, GB
// or TB, in powers of 1024.
func parseWrkBytes(s string) (float64, error) {
	units := []struct {
		suffix string
		unit   float64
	}{{"KB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30}, {"TB", 1 << 40}, {"B", 1}}
	for _, u := range units {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			v, err := strconv.ParseFloat(num, 64)
			if err != nil || v < 0 {
				break
			}
			return v * u.unit, nil
		}
	}
	return 0, fmt.Errorf("%w: size %q", ErrWrkOutput, s)
}

// Comparison is one load test run side by side against a server under test
// and a bare net/http baseline answering the same bytes.
type Comparison struct {
	// Server is the server under test, Baseline the bare handler.
	Server, Baseline *WrkResult
	// Bytes is the size of the response body.
	Bytes int64
}

// RequestsRatio is Server's requests per second over Baseline's.
func (c *Comparison) RequestsRatio() float64 {
	return c.Server.RequestsPerSec / c.Baseline.RequestsPerSec
}

// MedianRatio is Server's median latency over Baseline's.
func (c *Comparison) MedianRatio() float64 {
	return float64(c.Server.P50) / float64(c.Baseline.P50)
}

// ThroughputRatio is Server's bytes per second over Baseline's.
func (c *Comparison) ThroughputRatio() float64 {
	return c.Server.BytesPerSec / c.Baseline.BytesPerSec
}

// ManifestLatency measures a cached manifest GET under load: it fetches
// opts.URL once (which also makes sure the image is built and cached), then
// compares the server with a bare net/http handler that writes the same
// body with the same Content-Type and Docker-Content-Digest, using
// [Compare] with opts' connections (64 by default).
func ManifestLatency(ctx context.Context, opts WrkOptions) (*Comparison, error) {
	body, hdr, err := fetch(ctx, opts.URL, opts.Header)
	if err != nil {
		return nil, err
	}
	bare := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", hdr.Get("Content-Type"))
		h.Set("Docker-Content-Digest", hdr.Get("Docker-Content-Digest"))
		h.Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	})
	return Compare(ctx, opts, bare, int64(len(body)))
}

// Compare loads the server under test at opts.URL and baseline, served on
// a new 127.0.0.1 listener at the same path, with [Wrk] under the same
// options, side by side. size is the response body size it records.
//
// When opts.Warmup is positive, each side is first loaded for that long and
// the figures discarded. Then come opts.Rounds rounds (1 by default), each
// loading both sides: the baseline first in even rounds, the server first in
// odd ones. The order matters: whichever server is loaded second in a pair
// measured slower when both were the same bare handler, so with two or more
// rounds neither side is favoured. The runs of a side are combined:
// requests and errors added up, rates and percentiles averaged, weighted by
// duration. For example, rounds of 10 s at 40000 and 44000 requests per
// second give 42000.
//
// A response outside 2xx and 3xx in any run, warm-up included, is an error,
// and so is a side that completed no request. Socket errors (timeouts
// among them) are counted in the result, not refused.
func Compare(ctx context.Context, opts WrkOptions, baseline http.Handler, size int64) (*Comparison, error) {
	u, err := url.Parse(opts.URL)
	if err != nil {
		return nil, fmt.Errorf("speed: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: baseline}
	go srv.Serve(ln)
	defer srv.Close()
	u.Scheme, u.Host = "http", ln.Addr().String()
	serverURL, baseURL := opts.URL, u.String()

	run := func(o WrkOptions, target string) (*WrkResult, error) {
		o.URL = target
		r, err := Wrk(ctx, o)
		if err != nil {
			return nil, err
		}
		if r.NonSuccess > 0 {
			return nil, fmt.Errorf("speed: %s: %d of %d responses were not 2xx or 3xx", target, r.NonSuccess, r.Requests)
		}
		return r, nil
	}
	if opts.Warmup > 0 {
		warm := opts
		warm.Duration = opts.Warmup
		for _, target := range []string{baseURL, serverURL} {
			if _, err := run(warm, target); err != nil {
				return nil, err
			}
		}
	}
	var servers, bases []*WrkResult
	for i := range max(1, opts.Rounds) {
		order := []string{baseURL, serverURL}
		if i%2 == 1 {
			order = []string{serverURL, baseURL}
		}
		for _, target := range order {
			r, err := run(opts, target)
			if err != nil {
				return nil, err
			}
			if target == serverURL {
				servers = append(servers, r)
			} else {
				bases = append(bases, r)
			}
		}
	}
	c := &Comparison{Server: combine(servers), Baseline: combine(bases), Bytes: size}
	for _, side := range []struct {
		url string
		r   *WrkResult
	}{{serverURL, c.Server}, {baseURL, c.Baseline}} {
		if side.r.Requests == 0 {
			return nil, fmt.Errorf("speed: %s: wrk completed no request in %v", side.url, side.r.Duration)
		}
	}
	return c, nil
}

// combine adds up the counts of runs and averages their rates and
// percentiles, weighted by duration.
func combine(runs []*WrkResult) *WrkResult {
	c := &WrkResult{Connections: runs[0].Connections}
	for _, r := range runs {
		c.Duration += r.Duration
	}
	for _, r := range runs {
		w := float64(r.Duration) / float64(c.Duration)
		c.Requests += r.Requests
		c.NonSuccess += r.NonSuccess
		c.SocketErrors += r.SocketErrors
		c.RequestsPerSec += w * r.RequestsPerSec
		c.BytesPerSec += w * r.BytesPerSec
		c.P50 += time.Duration(w * float64(r.P50))
		c.P75 += time.Duration(w * float64(r.P75))
		c.P90 += time.Duration(w * float64(r.P90))
		c.P99 += time.Duration(w * float64(r.P99))
	}
	return c
}

// fetch GETs url with the given request headers and returns the body and
// response headers; a status other than 200 is an error.
func fetch(ctx context.Context, url string, hdr http.Header) ([]byte, http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, nil, err
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("speed: GET %s: %s: %.200s", url, resp.Status, body)
	}
	return body, resp.Header, nil
}
