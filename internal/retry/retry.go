// Package retry paces loops that must keep going through failures, such
// as a worker or dispatcher polling a queue that is briefly unavailable.
package retry

import (
	"context"
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

// Sleep waits for d or until ctx ends, whichever is first.
func Sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
