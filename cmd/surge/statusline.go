package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/surgeml/surge/internal/frontend"
)

// clearLine returns the cursor to the start of the line and erases it.
const clearLine = "\r\033[K"

// statusEvery is how often the line is redrawn; the web tier samples
// every frontend.HistoryInterval, so a new sample shows within a redraw.
const statusEvery = time.Second

// liveStatus is one line at the bottom of a terminal, redrawn in place
// with the system's state. Logs written through it (Logs) go above the
// line, never through it.
type liveStatus struct {
	out io.Writer // the terminal
	// width is the terminal's, 0 if unknown: a line that wrapped could
	// not be erased.
	width func() int
	mu    sync.Mutex
	line  string
}

// newLiveStatus returns a status line on stdout if it is a terminal, and
// the writer logs should go to: stderr, through the line when stderr is
// the same kind of terminal so the two do not mix. With stdout not a
// terminal (a pipe, a file, CI) there is no line (nil) and logs go
// straight to stderr.
func newLiveStatus(stdout, stderr *os.File) (*liveStatus, io.Writer) {
	if !term.IsTerminal(int(stdout.Fd())) {
		return nil, stderr
	}
	l := &liveStatus{out: stdout, width: func() int {
		w, _, err := term.GetSize(int(stdout.Fd()))
		if err != nil {
			return 0
		}
		return w
	}}
	if !term.IsTerminal(int(stderr.Fd())) {
		return l, stderr
	}
	return l, l.logs(stderr)
}

// draw replaces the line with s.
func (l *liveStatus) draw(s string) {
	if l.width != nil {
		s = truncate(s, l.width()-1)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.line = s
	fmt.Fprint(l.out, clearLine+s)
}

// clear erases the line and stops redrawing it in logs' wake.
func (l *liveStatus) clear() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.line != "" {
		fmt.Fprint(l.out, clearLine)
	}
	l.line = ""
}

// logs returns a writer to w that erases the line before each write and
// draws it again after.
func (l *liveStatus) logs(w io.Writer) io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.line == "" {
			return w.Write(p)
		}
		fmt.Fprint(l.out, clearLine)
		n, err := w.Write(p)
		fmt.Fprint(l.out, l.line)
		return n, err
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// start redraws the line from the web tier at url every statusEvery until
// the returned stop is called, which erases it. A nil line does nothing.
// tiers, if set, counts the web tiers sharing url, up and in all.
func (l *liveStatus) start(ctx context.Context, url string, tiers func() webCount) (stop func()) {
	if l == nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		w := statusWatch{tiers: tiers}
		client := &http.Client{Timeout: statusEvery}
		for {
			l.draw(w.poll(ctx, client, url))
			select {
			case <-ctx.Done():
				return
			case <-time.After(statusEvery):
			}
		}
	}()
	return func() { cancel(); <-done; l.clear() }
}

// statusWatch follows GET /status/history: the latest sample and the
// errors since the watch began.
type statusWatch struct {
	since  int64
	latest *frontend.HistoryPoint
	errors int
	tiers  func() webCount // nil: one web tier
}

// webCount is how many web tiers share the port: Up of All.
type webCount struct{ Up, All int }

// poll asks for the samples since the last and returns the line to show.
func (w *statusWatch) poll(ctx context.Context, client *http.Client, url string) string {
	h, err := fetchHistory(ctx, client, fmt.Sprintf("%s/status/history?since=%d", url, w.since))
	if err != nil {
		return "web tier not answering: " + err.Error()
	}
	w.add(h.Points)
	if w.latest == nil {
		return "waiting for the web tier's first sample"
	}
	var tiers webCount
	if w.tiers != nil {
		tiers = w.tiers()
	}
	return statusLine(*w.latest, w.errors, tiers)
}

// add takes in new samples.
func (w *statusWatch) add(points []frontend.HistoryPoint) {
	for _, p := range points {
		if p.At <= w.since {
			continue
		}
		if w.latest != nil { // the first sample's errors predate the watch
			w.errors += p.Errors
		}
		w.since, w.latest = p.At, &p
	}
}

func fetchHistory(ctx context.Context, client *http.Client, url string) (frontend.History, error) {
	var h frontend.History
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return h, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return h, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return h, fmt.Errorf("GET /status/history: %s", resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		return h, fmt.Errorf("reading /status/history: %w", err)
	}
	return h, nil
}

// statusLine is one sample as a line: the backlog, the fleet, the rate
// and median latency of answers over the sample, and the errors since the
// line began. With several web tiers, the answers and errors are those of
// the one the line's connection reached (the kernel chose it, and every
// tier keeps its own history), so the line says so.
func statusLine(p frontend.HistoryPoint, errors int, tiers webCount) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s backlog %d · workers %d (want %d) · ",
		time.UnixMilli(p.At).Format("15:04:05"), p.Backlog, p.Running, p.Desired)
	if tiers.All > 1 {
		fmt.Fprintf(&b, "web tiers %d of %d up; one of them: ", tiers.Up, tiers.All)
	}
	fmt.Fprintf(&b, "%.1f answers/s", p.AnswersPerSecond())
	if p.Answers > 0 {
		fmt.Fprintf(&b, ", median %s", formatMs(p.P50Ms))
	}
	sep := " · "
	if tiers.All > 1 {
		sep = ", "
	}
	fmt.Fprintf(&b, "%s%d %s", sep, errors, plural(errors, "error", "errors"))
	return b.String()
}

func formatMs(ms float64) string {
	if ms >= 1000 {
		return fmt.Sprintf("%.1f s", ms/1000)
	}
	return fmt.Sprintf("%.0f ms", ms)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// truncate cuts s to at most width characters; a width under 1 leaves it
// whole.
func truncate(s string, width int) string {
	if width < 1 {
		return s
	}
	for i := range s {
		if width == 0 {
			return s[:i]
		}
		width--
	}
	return s
}
