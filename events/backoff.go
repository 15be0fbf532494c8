// This file paces loops that must keep going through failures, such
// as a worker or dispatcher polling a queue that is briefly unavailable.

package events

import (
	"context"
	"log/slog"
	"time"
)

// Backoff is a delay that doubles from Min to Max with each consecutive
// failure and starts over after a success.
type Backoff struct {
	Min, Max time.Duration
	cur      time.Duration
}

// Failure returns how long to wait after another failure.
func (b *Backoff) Failure() time.Duration {
	b.cur = min(max(2*b.cur, b.Min), b.Max)
	return b.cur
}

// Success resets the delay.
func (b *Backoff) Success() { b.cur = 0 }

// After paces a polling loop after one attempt: a success resets the
// delay; a failure (unless ctx has ended, which is not one) is logged as
// doing and waited out.
func (b *Backoff) After(ctx context.Context, err error, log *slog.Logger, doing string) {
	if err == nil {
		b.Success()
		return
	}
	if ctx.Err() != nil {
		return
	}
	wait := b.Failure()
	log.Error(doing, "err", err, "retry_in", wait)
	Sleep(ctx, wait)
}

// Sleep waits for d or until ctx ends, whichever is first.
func Sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
