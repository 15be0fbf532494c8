// This file puts a cloud's round trips on any backend: every call to a
// queue, bucket or table waits as long as the same call to SQS, S3 or
// DynamoDB would take in-region, so that the local system, whose calls
// cost microseconds, can be measured with AWS's timings and without
// moto's throughput in the data path (docs/benchmark.md, the cloud bench).

package backend

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/surgeml/surge/events"
)

// Latency is the mean round trip of one call to each service, and how
// much each delay varies around it.
type Latency struct {
	SQS, S3, DynamoDB time.Duration
	// Jitter spreads each delay uniformly over mean×(1±Jitter), in [0, 1].
	Jitter float64
}

// AWSLatency is a typical in-region round trip to each service from an
// EC2 instance, from the sources docs/benchmark.md cites: SQS calls of
// about 20 ms, small S3 objects in the tens of milliseconds, DynamoDB
// item calls in single-digit milliseconds.
func AWSLatency() Latency {
	return Latency{SQS: 20 * time.Millisecond, S3: 25 * time.Millisecond, DynamoDB: 8 * time.Millisecond, Jitter: 0.25}
}

// ParseLatency reads "sqs=20ms,s3=25ms,dynamodb=8ms,jitter=0.25"; a
// service not named has no delay. "aws" is AWSLatency, "" or "none" none.
func ParseLatency(s string) (Latency, error) {
	switch strings.TrimSpace(s) {
	case "", "none":
		return Latency{}, nil
	case "aws":
		return AWSLatency(), nil
	}
	var l Latency
	for part := range strings.SplitSeq(s, ",") {
		key, value, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return Latency{}, fmt.Errorf("latency %q: want service=duration, got %q", s, part)
		}
		if key == "jitter" {
			j, err := strconv.ParseFloat(value, 64)
			if err != nil || j < 0 || j > 1 {
				return Latency{}, fmt.Errorf("latency %q: jitter must be a fraction in [0, 1], got %q", s, value)
			}
			l.Jitter = j
			continue
		}
		d, err := time.ParseDuration(value)
		if err != nil || d < 0 {
			return Latency{}, fmt.Errorf("latency %q: %s: want a non-negative duration, got %q", s, key, value)
		}
		switch key {
		case "sqs":
			l.SQS = d
		case "s3":
			l.S3 = d
		case "dynamodb":
			l.DynamoDB = d
		default:
			return Latency{}, fmt.Errorf("latency %q: unknown service %q (want sqs, s3, dynamodb or jitter)", s, key)
		}
	}
	return l, nil
}

// String is the form ParseLatency reads.
func (l Latency) String() string {
	if l.Zero() {
		return "none"
	}
	return fmt.Sprintf("sqs=%v,s3=%v,dynamodb=%v,jitter=%v", l.SQS, l.S3, l.DynamoDB, l.Jitter)
}

// Set makes a *Latency a flag.Value.
func (l *Latency) Set(s string) error {
	parsed, err := ParseLatency(s)
	if err != nil {
		return err
	}
	*l = parsed
	return nil
}

// Zero reports whether no call is delayed.
func (l Latency) Zero() bool { return l.SQS == 0 && l.S3 == 0 && l.DynamoDB == 0 }

// apply wraps every queue, bucket and table of b. The fleet and the
// change notifications are left alone: the first is not on the data path,
// the second is a local shortcut a real SQS lacks anyway.
func (l Latency) apply(b *Backends) {
	if l.Zero() {
		return
	}
	b.Requests = l.Queue(b.Requests)
	b.Responses = l.Queue(b.Responses)
	if b.RequestDeadLetters != nil {
		b.RequestDeadLetters = l.Queue(b.RequestDeadLetters)
	}
	b.Inputs, b.Outputs = l.Store(b.Inputs), l.Store(b.Outputs)
	if b.Table != nil {
		b.Table = l.Table(b.Table)
	}
	if b.Replies != nil {
		b.Replies = &slowReplies{ReplyQueues: b.Replies, l: l}
	}
}

// slowReplies delays the queues it opens as Queue does; finding,
// creating and deleting them is rare enough to leave at the backend's pace.
type slowReplies struct {
	events.ReplyQueues
	l Latency
}

func (r *slowReplies) Create(ctx context.Context, name string) (events.Queue, error) {
	q, err := r.ReplyQueues.Create(ctx, name)
	if err != nil {
		return nil, err
	}
	return r.l.Queue(q), nil
}

func (r *slowReplies) Open(ctx context.Context, name string) (events.Queue, error) {
	q, err := r.ReplyQueues.Open(ctx, name)
	if err != nil {
		return nil, err
	}
	return r.l.Queue(q), nil
}

// Queue delays every call to q by one SQS round trip.
func (l Latency) Queue(q events.Queue) events.Queue {
	return &slowQueue{q: q, rtt: roundTrip{mean: l.SQS, jitter: l.Jitter}}
}

// Store delays every call to s by one S3 round trip.
func (l Latency) Store(s events.Store) events.Store {
	return &slowStore{s: s, rtt: roundTrip{mean: l.S3, jitter: l.Jitter}}
}

// Table delays every call to t by one DynamoDB round trip.
func (l Latency) Table(t events.Table) events.Table {
	return &slowTable{t: t, rtt: roundTrip{mean: l.DynamoDB, jitter: l.Jitter}}
}

type roundTrip struct {
	mean   time.Duration
	jitter float64
}

// call runs do between the request's way out and the answer's way back,
// each half of one round trip: a message sent is visible only once the
// request has arrived, and one received is the caller's only once the
// answer has come back. The call's own error wins over the delay's.
func (r roundTrip) call(ctx context.Context, do func() error) error {
	d := r.mean
	if r.jitter > 0 && d > 0 {
		d = time.Duration(float64(d) * (1 + r.jitter*(2*rand.Float64()-1)))
	}
	if err := sleep(ctx, d/2); err != nil {
		return err
	}
	err := do()
	if werr := sleep(ctx, d-d/2); err == nil {
		err = werr
	}
	return err
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting out a round trip: %w", ctx.Err())
	}
}

type slowQueue struct {
	q   events.Queue
	rtt roundTrip
}

func (s *slowQueue) Send(ctx context.Context, body []byte) error {
	return s.rtt.call(ctx, func() error { return s.q.Send(ctx, body) })
}

// Receive pays one round trip however long the poll waits: a long poll
// is one request that the service holds open, not one per check.
func (s *slowQueue) Receive(ctx context.Context, max int, wait time.Duration) (msgs []events.Message, err error) {
	err = s.rtt.call(ctx, func() error {
		msgs, err = s.q.Receive(ctx, max, wait)
		return err
	})
	if err != nil && len(msgs) > 0 {
		// Received but cancelled on the way back: the messages reappear
		// after their visibility timeout, as they would on SQS.
		return nil, err
	}
	return msgs, err
}

// A batch is one round trip, as SendMessageBatch and DeleteMessageBatch are.
func (s *slowQueue) SendBatch(ctx context.Context, bodies [][]byte) error {
	return s.rtt.call(ctx, func() error { return s.q.SendBatch(ctx, bodies) })
}

func (s *slowQueue) DeleteBatch(ctx context.Context, receipts []string) error {
	return s.rtt.call(ctx, func() error { return s.q.DeleteBatch(ctx, receipts) })
}

func (s *slowQueue) Extend(ctx context.Context, receipt string, d time.Duration) error {
	return s.rtt.call(ctx, func() error { return s.q.Extend(ctx, receipt, d) })
}

func (s *slowQueue) Delete(ctx context.Context, receipt string) error {
	return s.rtt.call(ctx, func() error { return s.q.Delete(ctx, receipt) })
}

func (s *slowQueue) Counts(ctx context.Context) (c events.Counts, err error) {
	err = s.rtt.call(ctx, func() error {
		c, err = s.q.Counts(ctx)
		return err
	})
	return c, err
}

type slowStore struct {
	s   events.Store
	rtt roundTrip
}

func (s *slowStore) Put(ctx context.Context, key string, body []byte) error {
	return s.rtt.call(ctx, func() error { return s.s.Put(ctx, key, body) })
}

func (s *slowStore) Get(ctx context.Context, key string) (body []byte, err error) {
	err = s.rtt.call(ctx, func() error {
		body, err = s.s.Get(ctx, key)
		return err
	})
	return body, err
}

func (s *slowStore) Delete(ctx context.Context, key string) error {
	return s.rtt.call(ctx, func() error { return s.s.Delete(ctx, key) })
}

func (s *slowStore) List(ctx context.Context) (keys []string, err error) {
	err = s.rtt.call(ctx, func() error {
		keys, err = s.s.List(ctx)
		return err
	})
	return keys, err
}

type slowTable struct {
	t   events.Table
	rtt roundTrip
}

func (s *slowTable) Get(ctx context.Context, name string) (it events.Item, err error) {
	err = s.rtt.call(ctx, func() error {
		it, err = s.t.Get(ctx, name)
		return err
	})
	return it, err
}

func (s *slowTable) Put(ctx context.Context, it events.Item) error {
	return s.rtt.call(ctx, func() error { return s.t.Put(ctx, it) })
}

func (s *slowTable) Mark(ctx context.Context, it events.Item) error {
	return s.rtt.call(ctx, func() error { return s.t.Mark(ctx, it) })
}
