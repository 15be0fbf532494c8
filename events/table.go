// Vocabulary of the results table: one item per
// uploaded file name, holding the answer a worker gave for it, which the
// web tier reuses when the same name comes back with the same bytes. The
// table lives in DynamoDB on AWS (dynamotable) and in SQLite in the
// embedded system (sqlitetable); resultstest checks both.

package events

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"
)

// ErrNoItem reports a name the table holds no answer for.
var ErrNoItem = errors.New("no result recorded for this name")

// Item is the answer recorded for one file name.
type Item struct {
	Name   string // file name as uploaded, directory parts removed: the key
	Stem   string
	Label  string
	Score  float64
	Model  string    // the recognizer that answered
	SHA256 string    // hex digest of the image bytes that were answered
	Time   time.Time // when the answer was recorded
}

// Answers reports whether it is the answer for an upload of these bytes
// under model: an image replaced under its old name, or a change of model,
// needs a fresh answer.
func (it Item) Answers(sha256hex, model string) bool {
	return it.SHA256 == sha256hex && it.Model == model && it.Label != ""
}

// Pending reports whether it marks an upload of these bytes that a web
// instance queued less than life ago and whose answer has not come yet:
// the same upload sent again, after its first connection was cut, then
// waits for that answer instead of costing a second inference.
func (it Item) Pending(sha256hex string, now time.Time, life time.Duration) bool {
	return it.SHA256 == sha256hex && it.Label == "" && !it.Time.IsZero() && now.Sub(it.Time) < life
}

// Table is everything a backend offers.
type Table interface {
	// Get returns the item for name, or an error wrapping ErrNotFound.
	Get(ctx context.Context, name string) (Item, error)
	// Put records it, replacing any item with its name.
	Put(ctx context.Context, it Item) error
	// Mark records it, an upload being answered (no label), unless the
	// table already holds the answer for the same name and bytes: a
	// worker may record its answer before the web tier marks the upload
	// it answers.
	Mark(ctx context.Context, it Item) error
}

// TableHealth remembers whether the table answered last time, so that an
// outage is logged once when it starts and once when it ends, not once
// per request, and can be shown in a status page.
type TableHealth struct {
	log  *slog.Logger
	what string

	mu    sync.Mutex
	down  bool
	err   string
	since time.Time
}

// NewTableHealth reports through log, naming the table's user (what).
func NewTableHealth(log *slog.Logger, what string) *TableHealth {
	return &TableHealth{log: log, what: what, since: time.Now()}
}

// TableStatus is the table's health as last seen.
type TableStatus struct {
	OK    bool      `json:"ok"`
	Error string    `json:"error,omitempty"`
	Since time.Time `json:"since"`
}

// Observe records the outcome of a table call made for a caller whose
// context is ctx. A missing item is an answer; a call the caller gave up
// on says nothing about the table.
func (h *TableHealth) Observe(ctx context.Context, err error) {
	if err != nil && ctx.Err() != nil {
		return
	}
	if errors.Is(err, ErrNoItem) {
		err = nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case err != nil && !h.down:
		h.down, h.err, h.since = true, err.Error(), time.Now()
		h.log.Error("results table unavailable; answering through the queue until it is back", "for", h.what, "err", err)
	case err != nil:
		h.err = err.Error()
	case h.down:
		h.log.Info("results table reachable again", "for", h.what, "down_for", time.Since(h.since).Round(time.Millisecond))
		h.down, h.err, h.since = false, "", time.Now()
	}
}

// Status reports the health last observed.
func (h *TableHealth) Status() TableStatus {
	h.mu.Lock()
	defer h.mu.Unlock()
	return TableStatus{OK: !h.down, Error: h.err, Since: h.since}
}
