package frontend

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// pace is how fast an upload's body must arrive: at least minBytes in
// every window, and all of it within timeout. A client holding a
// connection open without sending would otherwise hold it, and what it
// sent, for ever.
type pace struct {
	window   time.Duration
	minBytes int64
	timeout  time.Duration
}

func (p pace) slowError() string {
	return fmt.Sprintf("upload too slow: the body must bring at least %s every %v", kilobytes(p.minBytes), p.window)
}

func (p pace) deadlineError() string {
	return fmt.Sprintf("upload too slow: the body must arrive within %v", p.timeout)
}

func kilobytes(n int64) string {
	if n%1024 == 0 {
		return fmt.Sprintf("%d KB", n/1024)
	}
	return fmt.Sprintf("%d bytes", n)
}

// errOverAllowance is a body longer than it was allowed to be from some
// point on.
var errOverAllowance = errors.New("request body over its allowance")

// bodies are the upload bodies being read, for /status.
type bodies struct {
	pace pace
	now  func() time.Time

	mu   sync.Mutex
	open map[*bodyReader]struct{}
}

func newBodies(p pace, now func() time.Time) *bodies {
	return &bodies{pace: p, now: now, open: map[*bodyReader]struct{}{}}
}

// bodyReader reads an upload's body at the pace, and no more of it than
// allowed. Time spent waiting for upload memory does not count against
// the client: the web tier is not reading then, so the client cannot send.
type bodyReader struct {
	set  *bodies
	r    io.Reader
	conn *http.ResponseController

	start   time.Time
	paused  time.Duration
	allowed int64
	err     error
	// missed is the client-facing reason once the pace or the deadline
	// was missed.
	missed string

	// Read by /status while the upload runs.
	windowStart      atomic.Int64 // unix nanoseconds
	inWindow         atomic.Int64 // bytes since windowStart
	waitingForMemory atomic.Bool
}

// read starts reading r's body, at most limit bytes of it; the caller
// closes it.
func (s *bodies) read(w http.ResponseWriter, r *http.Request, limit int64) *bodyReader {
	b := &bodyReader{set: s, r: http.MaxBytesReader(w, r.Body, limit), conn: http.NewResponseController(w), start: s.now(), allowed: limit}
	b.windowStart.Store(b.start.UnixNano())
	s.mu.Lock()
	s.open[b] = struct{}{}
	s.mu.Unlock()
	return b
}

// close ends the body's place in /status.
func (b *bodyReader) close() {
	b.set.mu.Lock()
	delete(b.set.open, b)
	b.set.mu.Unlock()
}

// allow lets the body read n more bytes from here on.
func (b *bodyReader) allow(n int64) { b.allowed = n }

func (b *bodyReader) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	// One byte past the allowance tells a longer body from one that ends
	// there.
	if int64(len(p)) > b.allowed+1 {
		p = p[:b.allowed+1]
	}
	pace := b.set.pace
	end := b.start.Add(pace.timeout + b.paused)
	deadline := time.Unix(0, b.windowStart.Load()).Add(pace.window)
	if end.Before(deadline) {
		deadline = end
	}
	// Unsupported only off a real connection (a recorder in a unit test),
	// where there is no client to wait for.
	b.conn.SetReadDeadline(deadline)

	n, err := b.r.Read(p)
	now := b.set.now()
	if int64(n) > b.allowed {
		n, err = int(b.allowed), errOverAllowance
	}
	b.allowed -= int64(n)
	if b.inWindow.Add(int64(n)) >= pace.minBytes {
		b.windowStart.Store(now.UnixNano())
		b.inWindow.Store(0)
	}
	switch {
	case errors.Is(err, io.EOF):
		// The server now watches the connection for the client leaving,
		// for as long as the answer takes: that read must not time out.
		b.conn.SetReadDeadline(time.Time{})
	case errors.Is(err, os.ErrDeadlineExceeded):
		if now.Before(end) {
			b.missed = pace.slowError()
		} else {
			b.missed = pace.deadlineError()
		}
		err = fmt.Errorf("%s: %w", b.missed, err)
	}
	if err != nil && !errors.Is(err, io.EOF) {
		b.err = err
	}
	return n, err
}

// drain reads the rest of the body, so that the server sees its end and
// notices if the client leaves while waiting for its answer.
func (b *bodyReader) drain() error {
	_, err := io.Copy(io.Discard, b)
	return err
}

// waitForMemory runs take, which waits for upload memory, with the
// body's clocks stopped.
func (b *bodyReader) waitForMemory(take func() error) error {
	b.waitingForMemory.Store(true)
	defer b.waitingForMemory.Store(false)
	start := b.set.now()
	err := take()
	waited := b.set.now().Sub(start)
	b.paused += waited
	b.windowStart.Add(int64(waited))
	return err
}

// slow reports whether the body is behind the pace: over half its window
// gone without the minimum.
func (b *bodyReader) slow(now time.Time) bool {
	if b.waitingForMemory.Load() {
		return false
	}
	since := now.Sub(time.Unix(0, b.windowStart.Load()))
	return since > b.set.pace.window/2 && b.inWindow.Load() < b.set.pace.minBytes
}

// count returns how many bodies are being read, and how many of them are
// behind the pace.
func (s *bodies) count() (reading, slow int) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for b := range s.open {
		reading++
		if b.slow(now) {
			slow++
		}
	}
	return reading, slow
}

func (s *Server) uploadsStatus() UploadsStatus {
	reading, slow := s.bodies.count()
	b := s.budget.status()
	return UploadsStatus{Reading: reading, Slow: slow, WaitingForMemory: b.waiting,
		MemoryHeld: b.held, MemoryPeak: b.peak, MemoryBudget: b.size}
}
