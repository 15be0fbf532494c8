// Vocabulary shared by every message queue backend
// (the embedded SQLite one, SQS) and by the code that uses them. Consumers
// declare the few methods they need; Queue is the whole contract that
// queuetest checks every backend against.

package events

import (
	"context"
	"time"
)

// Message is one received message. Receipt identifies this delivery for
// Extend and Delete; ReceiveCount includes this delivery.
type Message struct {
	ID           string
	Body         []byte
	Receipt      string
	ReceiveCount int
}

// Counts are approximate, as in SQS: Visible messages wait for a consumer,
// InFlight ones are received and not yet deleted or timed out.
type Counts struct {
	Visible  int `json:"visible"`
	InFlight int `json:"in_flight"`
}

// Backlog is the number of messages that still need work.
func (c Counts) Backlog() int { return c.Visible + c.InFlight }

// Queue is everything a backend offers.
type Queue interface {
	// Send enqueues body.
	Send(ctx context.Context, body []byte) error
	// Receive returns up to max messages, waiting up to wait for the first
	// one (long poll). Each stays invisible to other receivers for the
	// queue's visibility timeout. It returns no messages and no error when
	// the wait ends empty.
	Receive(ctx context.Context, max int, wait time.Duration) ([]Message, error)
	// Extend makes a received message invisible for d from now.
	Extend(ctx context.Context, receipt string, d time.Duration) error
	// Delete removes a received message for good.
	Delete(ctx context.Context, receipt string) error
	// Counts reports the approximate visible and in-flight counts.
	Counts(ctx context.Context) (Counts, error)
}
