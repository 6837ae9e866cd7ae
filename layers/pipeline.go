package layers

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// planKind says how a store path gets into a layer.
type planKind int

const (
	planCached planKind = iota // copy its members from the member cache
	planBuild                  // compress it (the build holds its claim)
	planWait                   // another build compresses it: wait, then copy
)

// pathPlan is the plan for one store path of a build.
type pathPlan struct {
	path  string
	name  string // member cache entry
	kind  planKind
	claim chan struct{} // planBuild: our claim; planWait: the other's
}

// runResult is what a pipeline learnt besides the blob.
type runResult struct {
	diffID        v1.Hash
	tarSize       int64
	stats         []pathStats
	cached, built int // store paths copied from the cache, compressed
}

// run plans a build of the sorted store paths in set and runs it, writing
// the layer blob to out.
func (a *Assembler) run(ctx context.Context, set []string, out io.Writer) (runResult, error) {
	plans := make([]pathPlan, len(set))
	for i, p := range set {
		plans[i] = pathPlan{path: p, name: a.memberName(p)}
		if _, err := os.Stat(plans[i].name); err == nil {
			continue // planCached; checked when used
		}
		claimed, ch := a.claim(plans[i].name)
		plans[i].claim = ch
		if claimed {
			plans[i].kind = planBuild
		} else {
			plans[i].kind = planWait
		}
	}
	defer func() {
		for _, p := range plans {
			if p.kind == planBuild {
				a.release(p.name, p.claim)
			}
		}
	}()
	return a.pipeline(ctx, plans, out)
}

// Events from the producer to the hasher.
type event struct {
	kind int // evStart, evChunk, evEnd
	i    int // index in plans
	data []byte
	size int64 // evEnd: the path's tar bytes
}

const (
	evStart = iota
	evChunk
	evEnd
)

// Items of the ordered queue from the hasher to the writer.
type item struct {
	kind int // evStart (a cached path), evChunk (a compressed chunk), evEnd
	i    int
	job  *job
	size int64
}

// job is one chunk to compress.
type job struct {
	data []byte
	out  *bytes.Buffer
	err  error
	done chan struct{}
}

var outPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// pipeline builds the store paths in plans into the layer blob written to
// out.
//
// Four stages run at once, connected by bounded channels:
//
//   - the producer walks the store paths and cuts their tar bytes into
//     chunks (one buffer per chunk, from a bounded pool);
//   - the hasher feeds every chunk to the DiffID hash, hands the chunks of
//     paths being built to the workers, and queues, in layer order, a
//     future for each compressed chunk or a marker for each cached path;
//   - the workers compress chunks into gzip members;
//   - the writer (the calling goroutine) takes the queue in order and
//     writes compressed chunks and cached members to out, and the
//     compressed chunks of each path being built to its member cache entry.
//
// The queue's capacity and the buffer pool bound memory; the blob and the
// DiffID come out of this one pass.
func (a *Assembler) pipeline(ctx context.Context, plans []pathPlan, out io.Writer) (res runResult, err error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	fail := func(err error) {
		errOnce.Do(func() { firstErr = err })
		cancel(err)
	}
	// Slack between the stages keeps the workers fed while the producer,
	// hasher or writer wait for a core: 2 chunks per worker waiting to be
	// compressed, 4 per worker compressed or being compressed ahead of the
	// writer. The buffer pool covers every chunk that can be in flight, so
	// memory stays at a few MiB per worker.
	workers := a.opts.Workers
	jobsCap, queueCap := 2*workers, 4*workers+2
	pool := newBufPool(a.opts.ChunkSize, queueCap+jobsCap+workers+4)
	events := make(chan event, 4)
	queue := make(chan item, queueCap)
	jobs := make(chan *job, jobsCap)

	// Producer.
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(events)
		send := func(e event) error {
			select {
			case events <- e:
				return nil
			case <-ctx.Done():
				return context.Cause(ctx)
			}
		}
		for i, p := range plans {
			if err := send(event{kind: evStart, i: i}); err != nil {
				return
			}
			c := &chunker{ctx: ctx, pool: pool, emit: func(b []byte) error { return send(event{kind: evChunk, i: i, data: b}) }}
			err := writeSegment(ctx, a.opts.Root, p.path, c)
			if err == nil {
				err = c.flush()
			}
			if err == nil {
				err = send(event{kind: evEnd, i: i, size: c.n})
			}
			if err != nil {
				pool.put(c.buf)
				fail(err)
				return
			}
		}
	}()

	// Hasher.
	var diffID v1.Hash
	var tarSize int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(queue)
		defer close(jobs)
		dh := sha256.New()
		dh.Write(storeHeaderTar)
		n := int64(len(storeHeaderTar))
		enqueue := func(it item) bool {
			select {
			case queue <- it:
				return true
			case <-ctx.Done():
				return false
			}
		}
		for e := range events {
			build := plans[e.i].kind == planBuild
			switch e.kind {
			case evStart:
				if !build && !enqueue(item{kind: evStart, i: e.i}) {
					return
				}
			case evChunk:
				dh.Write(e.data)
				n += int64(len(e.data))
				if !build {
					pool.put(e.data)
					continue
				}
				j := &job{data: e.data, done: make(chan struct{})}
				select {
				case jobs <- j:
				case <-ctx.Done():
					pool.put(e.data)
					return
				}
				if !enqueue(item{kind: evChunk, i: e.i, job: j}) {
					return
				}
			case evEnd:
				if !enqueue(item{kind: evEnd, i: e.i, size: e.size}) {
					return
				}
			}
		}
		if ctx.Err() != nil {
			return
		}
		dh.Write(storeTrailerTar)
		n += int64(len(storeTrailerTar))
		diffID, tarSize = hashOf(dh), n
	}()

	// Workers.
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := newCompressor(a.opts.Level)
			if err != nil {
				fail(err)
				return
			}
			for j := range jobs {
				j.out = outPool.Get().(*bytes.Buffer)
				j.out.Reset()
				// Deflate grows incompressible data by a few bytes per
				// 64 KiB block: reserve that, so that the buffer does
				// not double.
				j.out.Grow(len(j.data) + len(j.data)/64 + 256)
				if ctx.Err() != nil {
					j.err = context.Cause(ctx)
				} else {
					j.err = c.member(j.out, j.data)
					a.compressed.Add(1)
				}
				pool.put(j.data)
				j.data = nil
				close(j.done)
			}
		}()
	}

	// Writer.
	werr := a.write(ctx, plans, queue, out, &res)
	if werr != nil {
		fail(werr)
	}
	cancel(nil)
	// Drain what the stages left behind so that they can exit.
	for it := range queue {
		if it.job != nil {
			<-it.job.done
			outPool.Put(it.job.out)
		}
	}
	wg.Wait()
	if firstErr != nil {
		return runResult{}, firstErr
	}
	res.diffID, res.tarSize = diffID, tarSize
	return res, nil
}

// write is the pipeline's last stage.
func (a *Assembler) write(ctx context.Context, plans []pathPlan, queue <-chan item, out io.Writer, res *runResult) error {
	res.stats = make([]pathStats, len(plans))
	if _, err := out.Write(a.headerMember); err != nil {
		return err
	}
	var mt *memberTemp // entry being written for the current path
	defer func() {
		if mt != nil {
			mt.discard()
		}
	}()
	copyBuf := make([]byte, 256<<10)
	for {
		var it item
		var ok bool
		select {
		case it, ok = <-queue:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		if !ok {
			break
		}
		p := &plans[it.i]
		switch it.kind {
		case evStart: // a cached path
			if p.kind == planWait {
				select {
				case <-p.claim:
				case <-ctx.Done():
					return context.Cause(ctx)
				}
			}
			st, err := a.copyMembers(p.name, out, copyBuf)
			if err != nil {
				return err
			}
			res.stats[it.i] = st
			res.cached++
		case evChunk:
			j := it.job
			select {
			case <-j.done:
			case <-ctx.Done():
				return context.Cause(ctx)
			}
			if j.err != nil {
				return j.err
			}
			if mt == nil {
				var err error
				if mt, err = newMemberTemp(a.tmpDir); err != nil {
					return err
				}
			}
			if _, err := out.Write(j.out.Bytes()); err != nil {
				return err
			}
			if _, err := mt.Write(j.out.Bytes()); err != nil {
				return fmt.Errorf("layers: member cache: %w", err)
			}
			outPool.Put(j.out)
		case evEnd:
			if p.kind != planBuild {
				if st := res.stats[it.i]; st.tarSize != it.size {
					os.Remove(p.name)
					return fmt.Errorf("%w: %s holds %d tar bytes, the store path has %d", errRetry, p.name, st.tarSize, it.size)
				}
				continue
			}
			if mt == nil { // cannot happen: a segment has at least one block
				return fmt.Errorf("layers: %s: no tar bytes", p.path)
			}
			h, err := mt.commit(p.name, it.size)
			mt = nil
			if err != nil {
				return err
			}
			a.release(p.name, p.claim)
			res.stats[it.i] = pathStats{tarSize: h.tarSize, compSize: h.compSize}
			res.built++
		}
	}
	_, err := out.Write(a.trailerMember)
	return err
}

// copyMembers copies the members of a member cache entry to out, checking them against the entry's checksum. A damaged or missing entry
// is removed and reported as errRetry.
func (a *Assembler) copyMembers(name string, out io.Writer, buf []byte) (pathStats, error) {
	f, h, err := openMember(name)
	if err != nil {
		if errors.Is(err, errCorrupt) {
			os.Remove(name)
			return pathStats{}, fmt.Errorf("%w: %v", errRetry, err)
		}
		if errors.Is(err, fs.ErrNotExist) {
			return pathStats{}, fmt.Errorf("%w: %s vanished", errRetry, name)
		}
		return pathStats{}, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && time.Since(fi.ModTime()) > touchAge {
		now := time.Now()
		os.Chtimes(name, now, now) // recently used, for Trim
	}
	st := pathStats{tarSize: h.tarSize, compSize: h.compSize}
	sum := crc32.New(castagnoli)
	n, err := io.CopyBuffer(io.MultiWriter(out, sum), io.LimitReader(onlyReader{f}, h.compSize), buf)
	if err != nil {
		return pathStats{}, err
	}
	if n != h.compSize || sum.Sum32() != h.crc {
		os.Remove(name)
		return pathStats{}, fmt.Errorf("%w: %s: members do not match their checksum", errRetry, name)
	}
	return st, nil
}

// onlyReader hides every method but Read, so that io.CopyBuffer uses the
// buffer it is given.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }
