package events_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/surgeml/surge/events"
)

// gatedQueue records each DeleteBatch call and holds it until released,
// failing the receipts named in fail.
type gatedQueue struct {
	mu      sync.Mutex
	batches [][]string
	release chan struct{}
	fail    map[string]bool
}

func (q *gatedQueue) DeleteBatch(ctx context.Context, receipts []string) error {
	q.mu.Lock()
	q.batches = append(q.batches, slices.Clone(receipts))
	q.mu.Unlock()
	<-q.release
	failed := map[int]error{}
	for i, r := range receipts {
		if q.fail[r] {
			failed[i] = fmt.Errorf("receipt %s is invalid", r)
		}
	}
	if len(failed) > 0 {
		return &events.BatchError{Failed: failed}
	}
	return nil
}

func (q *gatedQueue) calls() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.batches)
}

// Entries given while a batch is on its way gather into the next
// one, at most MaxBatch a call; each caller gets its own entry's outcome;
// Close waits for every deletion asked for before it.
func TestBatcherGathersWhileABatchIsOnItsWay(t *testing.T) {
	q := &gatedQueue{release: make(chan struct{}), fail: map[string]bool{"r07": true}}
	d := events.NewBatcher(context.Background(), q.DeleteBatch, 1)

	outcomes := make(chan error, 1)
	d.Go("r00", func(err error) { outcomes <- err })
	waitFor(func() bool { return q.calls() == 1 })
	// r00 is on its way; these 12 wait for it and then go as 10 + 2 (the
	// Deleter buffers MaxBatch per batch in flight, so the last two are
	// still being handed over when the first ten go).
	const waiting = 12
	errs := make([]error, waiting)
	var answered sync.WaitGroup
	handedOver := make(chan struct{}, waiting)
	go func() {
		for i := range waiting {
			answered.Add(1)
			d.Go(fmt.Sprintf("r%02d", i+1), func(err error) { errs[i] = err; answered.Done() })
			handedOver <- struct{}{}
		}
	}()
	for range events.MaxBatch {
		<-handedOver
	}
	close(q.release)
	for range waiting - events.MaxBatch {
		<-handedOver
	}
	answered.Wait()
	if err := <-outcomes; err != nil {
		t.Errorf("r00: %v", err)
	}
	for i, err := range errs {
		if want := i+1 == 7; (err != nil) != want {
			t.Errorf("r%02d: err %v, want failure %v", i+1, err, want)
		}
	}
	d.Close()

	var sizes []int
	var all []string
	for _, b := range q.batches {
		sizes = append(sizes, len(b))
		all = append(all, b...)
	}
	slices.Sort(all)
	if len(all) != waiting+1 || len(slices.Compact(all)) != waiting+1 {
		t.Errorf("deleted %v, want r00..r%02d once each", all, waiting)
	}
	if sizes[0] != 1 || sizes[1] != events.MaxBatch || len(sizes) > 4 {
		t.Errorf("batch sizes %v: want the lone first at once, then the rest gathered in batches of at most %d", sizes, events.MaxBatch)
	}
}

// With several batches allowed on their way, a lone entry does not
// wait for another's round trip, and a call that fails whole fails each
// of its entries.
func TestBatcherBatchesInFlight(t *testing.T) {
	q := &gatedQueue{release: make(chan struct{})}
	d := events.NewBatcher(context.Background(), q.DeleteBatch, 3)
	for i := range 3 {
		d.Go(fmt.Sprintf("r%d", i), func(error) {})
		waitFor(func() bool { return q.calls() == i+1 })
	}
	close(q.release)
	d.Close()

	broken := errors.New("queue unreachable")
	d = events.NewBatcher(context.Background(), failingQueue{broken}.DeleteBatch, 1)
	if err := d.Do("r9"); !errors.Is(err, broken) {
		t.Errorf("Delete = %v, want the call's error", err)
	}
	d.Close()
}

type failingQueue struct{ err error }

func (q failingQueue) DeleteBatch(context.Context, []string) error { return q.err }

func waitFor(cond func() bool) {
	for !cond() {
		time.Sleep(time.Millisecond)
	}
}
