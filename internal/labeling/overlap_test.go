package labeling_test

import (
	"context"
	"fmt"
	"image"
	"log/slog"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/surgeml/surge/events"
	"github.com/surgeml/surge/internal/embedded"
	"github.com/surgeml/surge/internal/labeling"
	"github.com/surgeml/surge/internal/testenv"
)

// gauge tracks how many calls are under way at once, and the most.
type gauge struct {
	mu        sync.Mutex
	now, peak int
}

func (g *gauge) enter() {
	g.mu.Lock()
	g.now++
	g.peak = max(g.peak, g.now)
	g.mu.Unlock()
}

func (g *gauge) leave() {
	g.mu.Lock()
	g.now--
	g.mu.Unlock()
}

func (g *gauge) max() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.peak
}

// countedRecognizer wraps the rig's recognizer (the real model, or under
// -short the fake), counting calls under way; each takes at least delay,
// so that calls that could overlap do.
type countedRecognizer struct {
	labeling.Recognizer
	delay time.Duration
	g     *gauge
}

func (c countedRecognizer) Recognize(img image.Image) (string, float64, error) {
	c.g.enter()
	defer c.g.leave()
	time.Sleep(c.delay)
	return c.Recognizer.Recognize(img)
}

// slowInputs is the real input bucket with a download's round trip added,
// counting downloads under way.
type slowInputs struct {
	*embedded.Bucket
	delay time.Duration
	g     *gauge
}

func (s slowInputs) Get(ctx context.Context, key string) ([]byte, error) {
	s.g.enter()
	defer s.g.leave()
	time.Sleep(s.delay)
	return s.Bucket.Get(ctx, key)
}

// orderedRequests is the real request queue, checking at every batch
// delete that the answers to the requests it deletes are already on the
// response queue.
type orderedRequests struct {
	*embedded.Queue
	responses *embedded.Queue
	t         *testing.T

	mu      sync.Mutex
	deleted int
	batches []int
}

func (o *orderedRequests) DeleteBatch(ctx context.Context, receipts []string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	answered, err := o.responses.Counts(ctx)
	if err != nil {
		o.t.Error(err)
	}
	if answered.Visible < o.deleted+len(receipts) {
		o.t.Errorf("deleting %d requests with %d deleted before and only %d answered", len(receipts), o.deleted, answered.Visible)
	}
	o.deleted += len(receipts)
	o.batches = append(o.batches, len(receipts))
	return o.Queue.DeleteBatch(ctx, receipts)
}

// A worker holds more requests than it recognises at once: downloads and
// answers overlap inference, while decoding and inference stay within
// Inferences; every request is answered before it is deleted.
func TestHoldsMoreThanItRecognises(t *testing.T) {
	r := newRig(t, 30*time.Second, 5)
	const inferences, concurrency, n = 2, 6, 12
	var recognising, downloading, held gauge
	rec := countedRecognizer{r.recognizer, 50 * time.Millisecond, &recognising}
	requests := &orderedRequests{Queue: r.requests, responses: r.responses, t: t}
	inputs := slowInputs{r.inputs, 100 * time.Millisecond, &downloading}
	var heldMu sync.Mutex
	w := labeling.New(labeling.Config{Wait: time.Second, Inferences: inferences, Concurrency: concurrency,
		Held: func(n int) { heldMu.Lock(); held.peak = max(held.peak, n); heldMu.Unlock() }},
		requests, r.responses, inputs, r.outputs, r.table, rec, slog.New(slog.DiscardHandler))
	photos := []string{"dog.jpg", "eagle.jpg"}
	for i := range n {
		r.submit(t, fmt.Sprintf("id-%d", i), fmt.Sprintf("%d-%s", i, photos[i%2]), testenv.Photo(t, photos[i%2]))
	}
	r.runUntilEmpty(t, w)

	if c := r.counts(t, r.responses); c.Visible != n {
		t.Fatalf("%d answers for %d requests", c.Visible, n)
	}
	for range n {
		if res := r.result(t, time.Second); res.Error != nil || res.Label == "" || res.Answered.IsZero() {
			t.Errorf("result %+v: want a label and when it was sent", res)
		}
	}
	if got := recognising.max(); got != inferences {
		t.Errorf("at most %d images recognised at once, want %d", got, inferences)
	}
	if got := downloading.max(); got <= inferences {
		t.Errorf("at most %d downloads at once, want more than the %d inferences", got, inferences)
	}
	heldMu.Lock()
	if held.peak != concurrency {
		t.Errorf("held at most %d requests, want %d", held.peak, concurrency)
	}
	heldMu.Unlock()
	requests.mu.Lock()
	defer requests.mu.Unlock()
	if requests.deleted != n {
		t.Errorf("deleted %d requests in batches %v, want %d", requests.deleted, requests.batches, n)
	}
	t.Logf("deletes in batches of %v", requests.batches)
	for _, b := range requests.batches {
		if b > events.MaxBatch {
			t.Errorf("a batch of %d deletes", b)
		}
	}
}

// By default the cores the process may use (GOMAXPROCS: on an instance,
// its cores) set the inferences; HeldPerInference requests are held per
// inference, FetchPerInference of them with their upload in memory.
func TestDefaultsFromCores(t *testing.T) {
	for _, procs := range []int{1, 3} {
		was := runtime.GOMAXPROCS(procs)
		w := labeling.New(labeling.Config{}, nil, nil, nil, nil, nil, testenv.FakeRecognizer{}, slog.New(slog.DiscardHandler))
		runtime.GOMAXPROCS(was)
		if w.Inferences() != procs || w.Concurrency() != labeling.HeldPerInference*procs {
			t.Errorf("GOMAXPROCS %d: inferences %d, concurrency %d", procs, w.Inferences(), w.Concurrency())
		}
	}
	w := labeling.New(labeling.Config{Inferences: 3}, nil, nil, nil, nil, nil, testenv.FakeRecognizer{}, slog.New(slog.DiscardHandler))
	if w.Inferences() != 3 || w.Concurrency() != 3*labeling.HeldPerInference {
		t.Errorf("inferences 3: concurrency %d", w.Concurrency())
	}
}
