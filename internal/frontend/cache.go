package frontend

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/surgeml/surge/events"
)

// Answers is the results table as the web tier reads it: by name only.
type Answers interface {
	Get(ctx context.Context, name string) (events.Item, error)
}

// lookupTimeout bounds a table lookup: past it, the upload goes through
// the queue as if the table held nothing.
const lookupTimeout = time.Second

// cache answers repeated uploads from the results table: same name, same
// bytes, same model. Everything else, a table outage included, is a miss.
type cache struct {
	table Answers
	name  string
	// marks, when set, records the uploads being answered (markPending).
	marks Records
	// model is the recognizer the workers run: configured, then learned
	// from their answers, since they are the ones that know.
	model atomic.Pointer[string]

	lookups, recording *events.TableHealth
	hits, misses       atomic.Int64
}

// CacheStatus is the results table's part of GET /status.
type CacheStatus struct {
	Table     string             `json:"table"`
	Model     string             `json:"model"`
	Hits      int64              `json:"hits"`
	Misses    int64              `json:"misses"`
	Lookups   events.TableStatus `json:"lookups"`
	Recording events.TableStatus `json:"recording"` // as the workers' answers report it
}

// lookup returns the recorded answer for req, if the table has one for
// these bytes and this model. pending says instead that an upload of
// these bytes was queued less than life before now and is not answered
// yet (markPending).
func (c *cache) lookup(ctx context.Context, req events.Request, now time.Time, life time.Duration) (it events.Item, hit, pending bool) {
	if c.table == nil {
		return events.Item{}, false, false
	}
	model := c.model.Load()
	if model == nil && c.marks == nil {
		// Until the first answer or a configured name, a recorded label
		// may come from a model the workers no longer run.
		c.misses.Add(1)
		return events.Item{}, false, false
	}
	lctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	it, err := c.table.Get(lctx, req.Name)
	cancel()
	c.lookups.Observe(ctx, err)
	if err != nil || model == nil || !it.Answers(req.SHA256, *model) {
		if ctx.Err() == nil {
			c.misses.Add(1)
		}
		return events.Item{}, false, err == nil && c.marks != nil && it.Pending(req.SHA256, now, life)
	}
	c.hits.Add(1)
	return it, true, false
}

// markPending notes in the table that req is queued, when the web tier is
// one of several (marks is set): the same upload sent again, to any of
// them, then waits for this answer rather than queueing a second
// inference. A mark that cannot be written costs only that, and so does
// one the web tier dies before writing; a worker's answer already
// recorded is not replaced (events.Table.Mark).
func (c *cache) markPending(ctx context.Context, req events.Request, now time.Time) {
	if c.marks == nil {
		return
	}
	mctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	err := c.marks.Mark(mctx, events.Item{Name: req.Name, Stem: req.Stem, SHA256: req.SHA256, Time: now})
	if err != nil && ctx.Err() == nil {
		c.lookups.Observe(ctx, err)
	}
}

// pendingPoll is how often a repeated upload looks for the answer the
// first one is waiting for.
const pendingPoll = 250 * time.Millisecond

// awaitRecorded waits until the table holds the answer for req, and
// returns it, until deadline or stop. It gives up early (hit false, so
// the upload is queued after all) when the mark is gone or is no longer
// for these bytes.
func (c *cache) awaitRecorded(ctx context.Context, req events.Request, deadline time.Time, stop <-chan struct{}) (events.Item, bool) {
	t := time.NewTicker(pendingPoll)
	defer t.Stop()
	for time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return events.Item{}, false
		case <-stop:
			return events.Item{}, false
		case <-t.C:
		}
		lctx, cancel := context.WithTimeout(ctx, lookupTimeout)
		it, err := c.table.Get(lctx, req.Name)
		cancel()
		if err != nil {
			continue
		}
		// The answer to the very upload it waits for, from whichever
		// model the workers run now.
		if it.SHA256 == req.SHA256 && it.Label != "" {
			c.hits.Add(1)
			return it, true
		}
		if it.SHA256 != req.SHA256 || it.Label != "" {
			return events.Item{}, false
		}
	}
	return events.Item{}, false
}

// learn notes a worker's answer: which model answered, and whether it
// could be recorded.
func (c *cache) learn(ctx context.Context, res events.Result) {
	if res.Error != nil || res.Model == "" {
		return
	}
	if cur := c.model.Load(); cur == nil || *cur != res.Model {
		model := res.Model
		c.model.Store(&model)
	}
	var err error
	if res.Unrecorded != "" {
		err = errors.New(res.Unrecorded)
	}
	c.recording.Observe(ctx, err)
}

func (c *cache) status() CacheStatus {
	st := CacheStatus{Table: c.name, Hits: c.hits.Load(), Misses: c.misses.Load(),
		Lookups: c.lookups.Status(), Recording: c.recording.Status()}
	if m := c.model.Load(); m != nil {
		st.Model = *m
	}
	return st
}
