package frontend

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
)

// budget is the upload memory budget: the bytes of uploads held in memory
// at once. An upload takes its share as its bytes arrive, so a connection
// that stalls holds only what it sent, and keeps it for as long as it holds
// the bytes, waiting for its name's turn included.
//
// Taking memory piecemeal could deadlock: uploads each holding part of the
// budget, every one waiting for more. So a take is granted only if it
// leaves the budget safe (the banker's algorithm): in some order, every
// upload still reading can get the rest of its claim from what is free
// plus what the uploads before it give back. Uploads done reading need
// nothing more and give everything back once they are through.
type budget struct {
	size int64

	mu      sync.Mutex
	held    int64
	peak    int64
	claims  map[*claim]struct{}
	waiting []*pendingTake
}

// claim is one upload's share of the budget.
type claim struct {
	b       *budget
	max     int64 // the most it may ever hold
	held    int64
	settled bool // it takes no more
}

type pendingTake struct {
	c       *claim
	n       int64
	granted chan struct{}
}

func newBudget(size int64) *budget {
	return &budget{size: size, claims: map[*claim]struct{}{}}
}

// claim registers an upload that may come to hold up to max bytes (at
// most the whole budget). It holds nothing yet.
func (b *budget) claim(max int64) *claim {
	c := &claim{b: b, max: min(max, b.size)}
	b.mu.Lock()
	b.claims[c] = struct{}{}
	b.mu.Unlock()
	return c
}

// take waits until n more bytes can be held without risking deadlock, or
// until ctx ends.
func (c *claim) take(ctx context.Context, n int64) error {
	b := c.b
	b.mu.Lock()
	if c.settled || c.held+n > c.max {
		b.mu.Unlock()
		return fmt.Errorf("taking %d bytes of upload memory: over the claim of %d (%d held)", n, c.max, c.held)
	}
	if b.grantable(c, n) {
		b.grant(c, n)
		b.mu.Unlock()
		return nil
	}
	p := &pendingTake{c: c, n: n, granted: make(chan struct{})}
	b.waiting = append(b.waiting, p)
	b.mu.Unlock()

	select {
	case <-p.granted:
		return nil
	case <-ctx.Done():
		b.mu.Lock()
		defer b.mu.Unlock()
		select {
		case <-p.granted:
			// Granted meanwhile: the bytes go back with the claim.
			return nil
		default:
		}
		b.waiting = slices.DeleteFunc(b.waiting, func(q *pendingTake) bool { return q == p })
		return fmt.Errorf("waiting for upload memory: %w", context.Cause(ctx))
	}
}

// room is how much more c may take.
func (c *claim) room() int64 {
	c.b.mu.Lock()
	defer c.b.mu.Unlock()
	return c.max - c.held
}

// giveBack returns n of the bytes c holds, which it no longer uses.
func (c *claim) giveBack(n int64) {
	b := c.b
	b.mu.Lock()
	defer b.mu.Unlock()
	n = min(n, c.held)
	c.held -= n
	b.held -= n
	b.wake()
}

// settle says the upload takes no more: what it holds will only be given
// back.
func (c *claim) settle() {
	b := c.b
	b.mu.Lock()
	defer b.mu.Unlock()
	c.settled = true
	b.wake()
}

// release gives everything back. It may be called more than once.
func (c *claim) release() {
	b := c.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.claims[c]; !ok {
		return
	}
	delete(b.claims, c)
	b.held -= c.held
	c.held, c.settled = 0, true
	b.wake()
}

func (b *budget) grant(c *claim, n int64) {
	c.held += n
	b.held += n
	b.peak = max(b.peak, b.held)
}

// grantable reports whether c may take n bytes now. b.mu is held.
func (b *budget) grantable(c *claim, n int64) bool {
	free := b.size - b.held - n
	if free < 0 {
		return false
	}
	shares := make([]share, 0, len(b.claims))
	for o := range b.claims {
		s := o.share()
		if o == c {
			s.held += n
			s.need -= n
		}
		shares = append(shares, s)
	}
	return safe(free, shares)
}

// wake grants the waiting takes that have become safe. b.mu is held.
func (b *budget) wake() {
	b.waiting = slices.DeleteFunc(b.waiting, func(p *pendingTake) bool {
		if !b.grantable(p.c, p.n) {
			return false
		}
		b.grant(p.c, p.n)
		close(p.granted)
		return true
	})
}

func (c *claim) share() share {
	if c.settled {
		return share{held: c.held}
	}
	return share{held: c.held, need: c.max - c.held}
}

// share is a claim as the safety check sees it: what it holds, and what
// it may still take before it gives everything back.
type share struct{ held, need int64 }

// safe reports whether every share can get its need in some order, when
// free bytes are unheld and each share gives back what it held once its
// need is met. With one kind of resource, serving the smallest needs first
// finds such an order whenever one exists.
func safe(free int64, shares []share) bool {
	if free < 0 {
		return false
	}
	slices.SortFunc(shares, func(a, b share) int { return cmp.Compare(a.need, b.need) })
	for _, s := range shares {
		if s.need > free {
			return false
		}
		free += s.held
	}
	return true
}

// budgetStatus is the budget as /status shows it.
type budgetStatus struct {
	size, held, peak int64
	waiting          int
}

func (b *budget) status() budgetStatus {
	b.mu.Lock()
	defer b.mu.Unlock()
	return budgetStatus{size: b.size, held: b.held, peak: b.peak, waiting: len(b.waiting)}
}
