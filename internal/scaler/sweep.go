// The sweeper: the reply queues of web instances that are gone are
// drained into the shared response queue and, once they have stayed
// empty longer than a request can live, deleted. A queue is never deleted
// sooner, because a worker may still answer a request its instance sent,
// and a SendMessage to a queue being deleted can succeed and vanish.

package scaler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/surgeml/surge/events"
)

// Instances tells which web instances are still there.
type Instances interface {
	// Alive reports, for each id, whether its instance still runs (or
	// is on its way up or down); ids it does not know are gone.
	Alive(ctx context.Context, ids []string) (map[string]bool, error)
}

// emptySinceTag is the tag in which the sweeper notes since when a dead
// instance's reply queue is empty: the Lambda keeps no state between
// invocations, and tagging once per queue is far inside SQS's tagging
// rate.
const emptySinceTag = "surge-empty-since"

// maxMovedPerSweep bounds the messages one sweep moves from one queue,
// so that a sweep ends within a Lambda invocation; the next goes on.
const maxMovedPerSweep = 5000

// Sweeper tidies the reply queues of one deployment.
type Sweeper struct {
	names     events.Names
	replies   events.ReplyQueues
	shared    events.Queue
	instances Instances
	grace     time.Duration
	log       *slog.Logger
	now       func() time.Time
}

// DefaultReplyQueueGrace is how long a dead instance's reply queue must
// stay empty before it is deleted: longer than a request can live (its
// deliveries, each a visibility timeout, before the dead-letter queue)
// and than a web tier holds an upload.
const DefaultReplyQueueGrace = events.MaxReceives*events.RequestVisibility + 5*time.Minute

// NewSweeper sweeps the reply queues of names, moving what dead instances'
// queues hold to shared.
func NewSweeper(names events.Names, replies events.ReplyQueues, shared events.Queue, instances Instances, grace time.Duration, log *slog.Logger) *Sweeper {
	if grace <= 0 {
		grace = DefaultReplyQueueGrace
	}
	return &Sweeper{names: names, replies: replies, shared: shared, instances: instances, grace: grace, log: log, now: time.Now}
}

// Swept is what one sweep did.
type Swept struct {
	Queues  int      `json:"queues"` // reply queues found
	Dead    int      `json:"dead"`   // of those, of instances that are gone
	Moved   int      `json:"moved"`  // results moved to the shared queue
	Deleted []string `json:"deleted,omitempty"`
}

// Sweep looks at every reply queue once.
func (s *Sweeper) Sweep(ctx context.Context) (Swept, error) {
	var sw Swept
	queues, err := s.replies.List(ctx)
	if err != nil {
		return sw, err
	}
	sw.Queues = len(queues)
	if len(queues) == 0 {
		return sw, nil
	}
	ids := make([]string, 0, len(queues))
	byID := map[string]string{}
	for _, q := range queues {
		if id := s.names.ReplyInstance(q); id != "" {
			ids = append(ids, id)
			byID[id] = q
		}
	}
	alive, err := s.instances.Alive(ctx, ids)
	if err != nil {
		return sw, fmt.Errorf("finding which web instances are alive: %w", err)
	}
	var errs []error
	for _, id := range ids {
		if alive[id] {
			continue
		}
		sw.Dead++
		moved, deleted, err := s.sweepQueue(ctx, byID[id])
		sw.Moved += moved
		if deleted {
			sw.Deleted = append(sw.Deleted, byID[id])
		}
		if err != nil && !errors.Is(err, events.ErrNoQueue) {
			errs = append(errs, fmt.Errorf("sweeping %s: %w", byID[id], err))
		}
	}
	if sw.Moved > 0 || len(sw.Deleted) > 0 {
		s.log.Info("swept the reply queues of web instances that are gone", "queues", sw.Queues, "dead", sw.Dead, "moved", sw.Moved, "deleted", sw.Deleted)
	}
	return sw, errors.Join(errs...)
}

// sweepQueue moves what the queue holds and deletes it once it has been
// empty for the grace period.
func (s *Sweeper) sweepQueue(ctx context.Context, name string) (moved int, deleted bool, err error) {
	q, err := s.replies.Open(ctx, name)
	if err != nil {
		return 0, false, err
	}
	moved, err = s.move(ctx, q)
	if err != nil {
		return moved, false, err
	}
	counts, err := q.Counts(ctx)
	if err != nil {
		return moved, false, err
	}
	tags, err := s.replies.Tags(ctx, name)
	if err != nil {
		return moved, false, err
	}
	since, marked := parseTime(tags[emptySinceTag])
	now := s.now()
	switch {
	case moved > 0 || counts.Backlog() > 0:
		// Results the instance received and never deleted come back when
		// their visibility ends; the clock starts when they are gone.
		if marked {
			err = s.replies.Tag(ctx, name, map[string]string{emptySinceTag: ""})
		}
		return moved, false, err
	case !marked:
		return moved, false, s.replies.Tag(ctx, name, map[string]string{emptySinceTag: now.UTC().Format(time.RFC3339)})
	case now.Sub(since) < s.grace:
		return moved, false, nil
	}
	if err := s.replies.Delete(ctx, name); err != nil {
		return moved, false, err
	}
	s.log.Info("deleted the reply queue of a web instance that is gone", "queue", name, "empty_since", since)
	return moved, true, nil
}

// move passes the queue's visible results to the shared queue, without
// the reply queue they name: their instance is gone, so whichever web
// instance takes them records them rather than passing them back.
func (s *Sweeper) move(ctx context.Context, q events.Queue) (int, error) {
	moved := 0
	for moved < maxMovedPerSweep {
		// A long poll, however short, asks every SQS server; a short poll
		// samples some and can come back empty from a queue that is not.
		msgs, err := q.Receive(ctx, events.MaxBatch, time.Second)
		if err != nil || len(msgs) == 0 {
			return moved, err
		}
		bodies := make([][]byte, len(msgs))
		receipts := make([]string, len(msgs))
		for i, m := range msgs {
			bodies[i], receipts[i] = orphaned(m.Body), m.Receipt
		}
		if err := s.shared.SendBatch(ctx, bodies); err != nil {
			// What was not sent stays, to be moved by the next sweep;
			// what was is sent again then, which its reader settles.
			return moved, fmt.Errorf("moving results to the shared queue: %w", err)
		}
		if err := q.DeleteBatch(ctx, receipts); err != nil {
			return moved, fmt.Errorf("deleting moved results: %w", err)
		}
		moved += len(msgs)
	}
	return moved, nil
}

// orphaned is a result without its reply queue; a body that is no result
// is moved as it is, for the web tier to log.
func orphaned(body []byte) []byte {
	res, err := events.DecodeResult(body)
	if err != nil || res.ReplyTo == "" {
		return body
	}
	res.ReplyTo = ""
	if b, err := events.EncodeResult(res); err == nil {
		return b
	}
	return body
}

func parseTime(s string) (time.Time, bool) {
	t, err := time.Parse(time.RFC3339, s)
	return t, err == nil
}

// Run sweeps every period until ctx ends, as the local system's scaler
// does beside its reconciles (the Lambda sweeps once per invocation).
func (s *Sweeper) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if _, err := s.Sweep(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("sweeping reply queues", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
