package frontend_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/surgeml/surge/events"
	"github.com/surgeml/surge/internal/embedded"
	"github.com/surgeml/surge/internal/frontend"
)

// watchedQueue is the real embedded response queue, noting how many
// receives are waiting at once and what each batch delete took.
type watchedQueue struct {
	*embedded.Queue

	mu        sync.Mutex
	receiving int
	peak      int
	deletes   []int // receipts per DeleteBatch call
}

func (q *watchedQueue) Receive(ctx context.Context, limit int, wait time.Duration) ([]events.Message, error) {
	q.mu.Lock()
	q.receiving++
	q.peak = max(q.peak, q.receiving)
	q.mu.Unlock()
	defer func() {
		q.mu.Lock()
		q.receiving--
		q.mu.Unlock()
	}()
	return q.Queue.Receive(ctx, limit, wait)
}

func (q *watchedQueue) DeleteBatch(ctx context.Context, receipts []string) error {
	q.mu.Lock()
	q.deletes = append(q.deletes, len(receipts))
	q.mu.Unlock()
	return q.Queue.DeleteBatch(ctx, receipts)
}

func (q *watchedQueue) snapshot() (peak int, deletes []int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.peak, append([]int(nil), q.deletes...)
}

// The web tier long-polls the response queue with several receivers at
// once, and deletes the results each one routed in batches: a burst of
// results leaves the queue in fewer delete round trips than results,
// every one of them routed.
func TestDispatcherReceiversAndBatchDeletes(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	requests, err := embedded.OpenQueue(ctx, dir, "req", embedded.QueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { requests.Close() })
	raw, err := embedded.OpenQueue(ctx, dir, "resp", embedded.QueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	responses := &watchedQueue{Queue: raw}
	const receivers = 3
	srv := frontend.New(frontend.Config{Receivers: receivers}, frontend.Backends{
		Requests: requests, Responses: responses, DeadLetters: requests.DeadLetters(),
		Fleet: embedded.NewFleetReader(dir),
	}, slog.New(slog.DiscardHandler))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(sctx, ln) }()
	t.Cleanup(func() { stop(); <-served })

	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if peak, _ := responses.snapshot(); peak == receivers {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("%d receives waiting at once, want %d", peak, receivers)
		}
	}

	const results = 40
	bodies := make([][]byte, results)
	for i := range bodies {
		// Each was sent 50 ms before the batch lands.
		body, err := events.EncodeResult(events.Result{V: events.Version, ID: fmt.Sprintf("00000000-0000-4000-8000-0000000000%02d", i), Stem: fmt.Sprintf("f%02d", i), Label: "cat",
			Answered: time.Now().Add(-50 * time.Millisecond)})
		if err != nil {
			t.Fatal(err)
		}
		bodies[i] = body
	}
	if err := raw.SendBatch(ctx, bodies); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		c, err := raw.Counts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if c == (events.Counts{}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("results still in the response queue: %+v", c)
		}
	}
	_, deletes := responses.snapshot()
	deleted := 0
	for _, n := range deletes {
		if n < 1 || n > events.MaxBatch {
			t.Errorf("a batch delete of %d receipts", n)
		}
		deleted += n
	}
	if deleted != results || len(deletes) >= results {
		t.Errorf("%d results deleted in %d calls %v, want %d in fewer calls than results", deleted, len(deletes), deletes, results)
	}
	// /status tells how long they waited in the response queue.
	resp, err := http.Get(fmt.Sprintf("http://%s/status", ln.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	var st frontend.Status
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if d := st.Delivery; err != nil || d.Results != results || d.P50Ms < 50 || d.MaxMs < d.P99Ms || d.P99Ms < d.P50Ms || d.MaxMs > 10_000 {
		t.Errorf("delivery %+v (%v), want %d results that waited at least 50 ms", d, err, results)
	}
	for i := range results {
		resp, err := http.Get(fmt.Sprintf("http://%s/results/00000000-0000-4000-8000-0000000000%02d", ln.Addr(), i))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := fmt.Sprintf("f%02d:cat", i); resp.StatusCode != http.StatusOK || string(body) != want {
			t.Errorf("GET /results/r%02d: %d %q, want 200 %q", i, resp.StatusCode, body, want)
		}
	}
}
