package frontend

import (
	"cmp"
	"context"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"
)

// HistoryInterval is how often the web tier samples its own status for
// GET /status/history while there is something to see (sampleEvery):
// often enough for a chart that moves.
const HistoryInterval = 2 * time.Second

// historyPoints keeps ten minutes of samples at HistoryInterval, more
// when idle.
const historyPoints = int(10 * time.Minute / HistoryInterval)

// latenciesKept bounds the upload latencies held between two samples; a
// span with more answers takes its percentiles from the first ones.
const latenciesKept = 8192

// HistoryPoint is one sample of the web tier's status.
type HistoryPoint struct {
	At      int64 `json:"t"`       // Unix milliseconds
	Backlog int   `json:"backlog"` // request queue, visible and in flight
	Desired int   `json:"desired"`
	Running int   `json:"running"`
	// Answers and Errors count the uploads answered since the previous
	// sample, over Seconds: answers are 200s, errors every 4xx and 5xx.
	Answers int     `json:"answers"`
	Errors  int     `json:"errors"`
	Seconds float64 `json:"seconds"`
	// P50Ms and MaxMs are the latencies of those answers, arrival to
	// answer; zero with none. Errors are left out: a refusal is quick.
	P50Ms float64 `json:"p50_ms"`
	MaxMs float64 `json:"max_ms"`
}

// AnswersPerSecond is the rate of successful answers over the sample.
func (p HistoryPoint) AnswersPerSecond() float64 {
	if p.Seconds <= 0 {
		return 0
	}
	return float64(p.Answers) / p.Seconds
}

// History is the body of GET /status/history.
type History struct {
	IntervalMs int64          `json:"interval_ms"`
	Points     []HistoryPoint `json:"points"`
	// Status is the latest full sample (instances included), nil before
	// the first.
	Status *Status `json:"status,omitempty"`
}

// history is a ring of the latest samples and the tally of uploads since
// the last one. Its zero value is ready to use.
type history struct {
	mu     sync.Mutex
	points []HistoryPoint
	latest *Status

	answers, errors int
	latencies       []time.Duration
	spanStart       time.Time

	// lastWatched is the latest GET /status/history; wake cuts an idle
	// sampler's wait short.
	lastWatched time.Time
	wake        chan struct{}
}

// record counts one answered upload.
func (h *history) record(status int, took time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case status >= 200 && status < 300:
		h.answers++
		if len(h.latencies) < latenciesKept {
			h.latencies = append(h.latencies, took)
		}
	case status >= 400:
		h.errors++
	}
}

// add closes the span at now with st: the tally goes into a new point and
// starts again.
func (h *history) add(now time.Time, st Status) HistoryPoint {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := HistoryPoint{
		At:      now.UnixMilli(),
		Backlog: st.RequestQueue.Backlog(),
		Desired: st.Fleet.Desired,
		Running: st.Fleet.Running,
		Answers: h.answers,
		Errors:  h.errors,
	}
	if !h.spanStart.IsZero() {
		p.Seconds = now.Sub(h.spanStart).Seconds()
	}
	p.P50Ms, p.MaxMs = latencySummary(h.latencies)
	h.answers, h.errors, h.latencies, h.spanStart = 0, 0, h.latencies[:0], now
	if len(h.points) == historyPoints {
		h.points = slices.Delete(h.points, 0, 1)
	}
	h.points = append(h.points, p)
	h.latest = &st
	return p
}

// since returns the points after the Unix millisecond since, and the
// latest status.
func (h *history) since(since int64) History {
	h.mu.Lock()
	defer h.mu.Unlock()
	i, _ := slices.BinarySearchFunc(h.points, since+1, func(p HistoryPoint, t int64) int { return cmp.Compare(p.At, t) })
	return History{
		IntervalMs: HistoryInterval.Milliseconds(),
		Points:     slices.Clone(h.points[i:]),
		Status:     h.latest,
	}
}

// latencySummary is the median and the largest of ds, in milliseconds; it
// sorts ds.
func latencySummary(ds []time.Duration) (p50, maxMs float64) {
	if len(ds) == 0 {
		return 0, 0
	}
	slices.Sort(ds)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	return ms(ds[(len(ds)-1)/2]), ms(ds[len(ds)-1])
}

// idleInterval spaces the samples while nothing happens and no one
// watches: on AWS each sample is three queue calls and a DescribeInstances,
// and an idle web tier sampling every 2 s would make about four million
// SQS requests a month for a flat line.
const idleInterval = 30 * time.Second

// watchedFor is how long after a GET /status/history the page is taken to
// be open.
const watchedFor = time.Minute

// sampleEvery is the wait after a sample p, with the page last asked for
// sinceWatched ago: HistoryInterval while there is work, a fleet or a
// watcher, idleInterval otherwise.
func sampleEvery(p HistoryPoint, sinceWatched time.Duration) time.Duration {
	if p.Backlog > 0 || p.Running > 0 || p.Desired > 0 || p.Answers > 0 || p.Errors > 0 || sinceWatched < watchedFor {
		return HistoryInterval
	}
	return idleInterval
}

// sampleHistory records samples until ctx ends. An idle sampler samples at
// once when an upload arrives or the page asks.
func (s *Server) sampleHistory(ctx context.Context) {
	s.history.wakeup() // pokes count from now on
	for {
		sctx, cancel := context.WithTimeout(ctx, HistoryInterval)
		st := s.currentStatus(sctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		now := s.now()
		p := s.history.add(now, st)
		wait := sampleEvery(p, now.Sub(s.history.watched()))
		var wake <-chan struct{} // busy: the next sample is soon anyway
		if wait > HistoryInterval {
			wake = s.history.wakeup()
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-wake:
			// A poke left from a busy spell only brings one sample forward.
			t.Stop()
		}
	}
}

// wakeup returns the channel poke signals on.
func (h *history) wakeup() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.wake == nil {
		h.wake = make(chan struct{}, 1)
	}
	return h.wake
}

// poke wakes an idle sampler.
func (h *history) poke() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.wake == nil {
		return
	}
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// watch notes that the page asked at now, and wakes an idle sampler.
func (h *history) watch(now time.Time) {
	h.mu.Lock()
	h.lastWatched = now
	h.mu.Unlock()
	h.poke()
}

func (h *history) watched() time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.lastWatched
}

// statusHistory answers GET /status/history?since=<Unix ms>: the samples
// after since (all kept, without it) and the latest full status.
func (s *Server) statusHistory(w http.ResponseWriter, r *http.Request) {
	var since int64
	if v := r.URL.Query().Get("since"); v != "" {
		var err error
		if since, err = strconv.ParseInt(v, 10, 64); err != nil {
			s.writeError(w, r, fail(http.StatusBadRequest, "since is not a Unix time in milliseconds: %q", v), "")
			return
		}
	}
	s.history.watch(s.now())
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, s.history.since(since))
}
