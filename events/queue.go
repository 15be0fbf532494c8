// Vocabulary shared by every message queue backend
// (the embedded SQLite one, SQS) and by the code that uses them. Consumers
// declare the few methods they need; Queue is the whole contract that
// queuetest checks every backend against.

package events

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
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
	// SendBatch enqueues each body, in as few round trips as the backend
	// allows (SQS: MaxBatch a call). Entries succeed or fail on their
	// own: an error wrapping a *BatchError names the ones that failed,
	// by index; the others were sent.
	SendBatch(ctx context.Context, bodies [][]byte) error
	// DeleteBatch removes each received message, as Delete does, in as
	// few round trips as the backend allows; failures are reported as
	// SendBatch's are.
	DeleteBatch(ctx context.Context, receipts []string) error
	// Counts reports the approximate visible and in-flight counts.
	Counts(ctx context.Context) (Counts, error)
}

// ErrNoQueue reports a queue that does not exist, or no longer does.
var ErrNoQueue = errors.New("no such queue")

// ReplyQueues are the web instances' reply queues of one deployment, made
// and ended at run time: each web instance creates its own, workers open
// them to answer, the sweeper drains and deletes those of instances that
// are gone. Names outside the deployment's reply prefix are refused.
type ReplyQueues interface {
	// Create makes the queue, or opens it when it exists.
	Create(ctx context.Context, name string) (Queue, error)
	// Open finds the queue; an error wrapping ErrNoQueue says it is gone.
	Open(ctx context.Context, name string) (Queue, error)
	// List names the reply queues that exist.
	List(ctx context.Context) ([]string, error)
	// Delete removes the queue and whatever it still holds.
	Delete(ctx context.Context, name string) error
	// Tags and Tag read and set the queue's tags, where the sweeper keeps
	// what it must remember between runs; an empty value removes a tag.
	Tags(ctx context.Context, name string) (map[string]string, error)
	Tag(ctx context.Context, name string, tags map[string]string) error
}

// MaxBatch is the most entries one SQS batch call takes
// (SendMessageBatch, DeleteMessageBatch); larger batches are split.
const MaxBatch = 10

// BatchError reports the entries of a batch call that failed, by their
// index in the call. Entries not named succeeded.
type BatchError struct {
	Failed map[int]error
}

func (e *BatchError) Error() string {
	// A call that failed whole fails each of its entries alike: say so
	// once, with the entries it took.
	byMsg := map[string][]int{}
	for i, err := range e.Failed {
		byMsg[err.Error()] = append(byMsg[err.Error()], i)
	}
	parts := make([]string, 0, len(byMsg))
	for msg, idx := range byMsg {
		sort.Ints(idx)
		parts = append(parts, fmt.Sprintf("entries %v: %s", idx, msg))
	}
	sort.Strings(parts)
	return fmt.Sprintf("%d of the batch failed: %s", len(e.Failed), strings.Join(parts, "; "))
}
