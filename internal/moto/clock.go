package moto

import (
	"sync"
	"time"
)

// Clock is the emulated cloud's time: real time plus an offset that tests
// (and users, through the admin endpoint) can advance, so that behaviours
// measured in hours on AWS (client-token memory, terminated instances
// leaving DescribeInstances) can be seen in seconds. Time never goes back.
type Clock struct {
	mu     sync.Mutex
	offset time.Duration
}

// NewClock returns a clock that shows real time until advanced.
func NewClock() *Clock { return &Clock{} }

// Now is real time plus every advance so far.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

// Advance moves the clock forward by d; a negative d is ignored, since the
// emulated cloud's time never goes back.
func (c *Clock) Advance(d time.Duration) {
	if d <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
}
