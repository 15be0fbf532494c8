package labeling

import (
	"context"
	"errors"

	"github.com/surgeml/surge/events"
)

// deleter deletes answered requests for the worker's goroutines, in
// batches: while one batch is on its round trip the requests answered
// meanwhile gather for the next, so requests that finish together are
// deleted together, and a lone one goes at once.
type deleter struct {
	requests Requests
	queue    chan deletion
}

type deletion struct {
	receipt string
	done    chan error
}

func newDeleter(r Requests) *deleter {
	return &deleter{requests: r, queue: make(chan deletion)}
}

// delete deletes receipt in the next batch and returns that deletion's
// outcome; a handler calls it only after its answer is sent.
func (d *deleter) delete(receipt string) error {
	done := make(chan error, 1)
	d.queue <- deletion{receipt: receipt, done: done}
	return <-done
}

// close ends run once every delete called before it is done.
func (d *deleter) close() { close(d.queue) }

func (d *deleter) run(ctx context.Context) {
	for first := range d.queue {
		batch := []deletion{first}
	gather:
		for len(batch) < events.MaxBatch {
			select {
			case next, ok := <-d.queue:
				if !ok {
					break gather
				}
				batch = append(batch, next)
			default:
				break gather
			}
		}
		receipts := make([]string, len(batch))
		for i, del := range batch {
			receipts[i] = del.receipt
		}
		err := d.requests.DeleteBatch(ctx, receipts)
		var failed *events.BatchError
		for i, del := range batch {
			switch {
			case errors.As(err, &failed):
				del.done <- failed.Failed[i]
			default:
				del.done <- err
			}
		}
	}
}
