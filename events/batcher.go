package events

import (
	"context"
	"errors"
	"sync"
)

// Batcher makes batch calls for many goroutines: while a batch is on its
// round trip, the entries asked for meanwhile gather for the next, so
// entries ready together go together and a lone one goes at once. Up to
// inFlight batches are on their way at once, so a queue whose round trips
// take tens of milliseconds still keeps up with any fleet (inFlight ×
// MaxBatch entries a round trip).
type Batcher[T any] struct {
	call    func(ctx context.Context, entries []T) error
	pending chan entry[T]
	runners sync.WaitGroup
}

type entry[T any] struct {
	value T
	done  func(error)
}

// NewBatcher starts making batch calls of up to MaxBatch entries; call
// reports entries that failed alone with a *BatchError, as Queue's batch
// calls do. Close stops it.
func NewBatcher[T any](ctx context.Context, call func(ctx context.Context, entries []T) error, inFlight int) *Batcher[T] {
	b := &Batcher[T]{call: call, pending: make(chan entry[T], MaxBatch*max(inFlight, 1))}
	for range max(inFlight, 1) {
		b.runners.Go(func() { b.run(ctx) })
	}
	return b
}

// Do puts v in the next batch and returns its outcome.
func (b *Batcher[T]) Do(v T) error {
	done := make(chan error, 1)
	b.Go(v, func(err error) { done <- err })
	return <-done
}

// Go puts v in the next batch and returns; done is called with its
// outcome, from the Batcher's goroutine.
func (b *Batcher[T]) Go(v T, done func(error)) {
	b.pending <- entry[T]{value: v, done: done}
}

// Close returns once every entry given before it is done. Nothing may be
// given after.
func (b *Batcher[T]) Close() {
	close(b.pending)
	b.runners.Wait()
}

func (b *Batcher[T]) run(ctx context.Context) {
	for first := range b.pending {
		batch := []entry[T]{first}
	gather:
		for len(batch) < MaxBatch {
			select {
			case next, ok := <-b.pending:
				if !ok {
					break gather
				}
				batch = append(batch, next)
			default:
				break gather
			}
		}
		values := make([]T, len(batch))
		for i, e := range batch {
			values[i] = e.value
		}
		err := b.call(ctx, values)
		var failed *BatchError
		for i, e := range batch {
			switch {
			case errors.As(err, &failed):
				e.done(failed.Failed[i])
			default:
				e.done(err)
			}
		}
	}
}
