// Embedded queue: goqite's SQLite table with SQS
// semantics added on top (batch long polling that wakes when another
// process sends, receive counts, a dead-letter queue, approximate counts).
// One database file holds a queue and its dead-letter queue, so moving a
// message between them is one transaction. Any number of processes may
// open the same file.
//
// Long polls wake on a "bell": a file beside the database whose timestamp
// every Send touches after committing, watched with inotify. Watching the
// database itself would wake every waiting process on every write of any
// kind, several times per commit, and before the commit is visible.

package embedded

import (
	"context"
	"database/sql"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"maragu.dev/goqite"

	"github.com/surgeml/surge/events"
)

//go:embed schema.sql
var schema string

// goqite stores instants as text in this layout and compares them as
// strings, so every query here must format times exactly like it.
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

// pollFallback bounds how long a waiting receiver can miss a message that
// rang no bell: one whose visibility timeout expired, or one sent while the
// bell could not be rung.
const pollFallback = 250 * time.Millisecond

// redriveEvery limits how often one process moves exhausted messages to the
// dead-letter queue; the move is a table scan.
const redriveEvery = time.Second

// QueueOptions configure a queue. Zero values take the defaults in brackets.
type QueueOptions struct {
	Visibility  time.Duration // how long a received message stays hidden [30s]
	MaxReceives int           // deliveries before a message moves to the dead-letter queue [5]
}

// Queue is one named queue in a SQLite file.
type Queue struct {
	db          *sql.DB
	q           *goqite.Queue
	name        string
	visibility  time.Duration
	maxReceives int
	watch       *watcher
	// polling is held by the one receive of this process that looks at
	// the table and waits for the bell; the others wait their turn. A
	// ring then wakes one poller per process, not every long poll, which
	// all but one would spend reading the table to find nothing taken.
	polling chan struct{}
	// redrive moves the source queue's exhausted messages to its
	// dead-letter queue; a queue and its DeadLetters view share it.
	redrive *redrive
}

var _ events.Queue = (*Queue)(nil)

// redrive moves messages that used up their deliveries, and whose last
// delivery ended, from one queue to its dead-letter queue. SQS moves them
// when someone receives; here anyone who receives from or counts either
// queue does, so that a dead letter shows up within seconds even when no
// worker is left polling the source (the scaler stops counting it, so the
// fleet may well be at zero).
type redrive struct {
	from, to    string
	maxReceives int

	mu   sync.Mutex
	last time.Time
}

// OpenQueue opens (creating if needed) the queue stored in dir/<name>.db. Its
// dead-letter queue, <name>-dlq, lives in the same file; see DeadLetters.
func OpenQueue(ctx context.Context, dir, name string, opts QueueOptions) (*Queue, error) {
	if opts.Visibility == 0 {
		opts.Visibility = events.RequestVisibility
	}
	if opts.MaxReceives == 0 {
		opts.MaxReceives = events.MaxReceives
	}
	if opts.Visibility < 0 || opts.MaxReceives < 0 {
		return nil, fmt.Errorf("opening queue %s: negative visibility or receive limit", name)
	}
	if name == "" || strings.ContainsAny(name, `/\`) {
		return nil, fmt.Errorf("opening queue: bad name %q", name)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("opening queue %s: %w", name, err)
	}
	path := filepath.Join(dir, name+".db")
	// WAL lets readers run beside the one writer; IMMEDIATE transactions take
	// the write lock up front so a busy writer waits instead of failing;
	// NORMAL sync survives a killed process (not a power cut) at a fraction
	// of FULL's cost.
	db, err := openSQLite(path, sqliteOptions{busyTimeout: 10 * time.Second, immediate: true})
	if err != nil {
		return nil, fmt.Errorf("opening queue %s: %w", name, err)
	}
	// One connection per process and file: goroutines queue in database/sql
	// instead of spinning in SQLite's busy handler.
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("creating queue schema in %s: %w", path, err)
	}
	w, err := watch(path + ".bell")
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("watching queue %s: %w", name, err)
	}
	q := newQueue(db, name, opts, w)
	q.redrive = &redrive{from: name, to: name + "-dlq", maxReceives: opts.MaxReceives}
	return q, nil
}

func newQueue(db *sql.DB, name string, opts QueueOptions, w *watcher) *Queue {
	return &Queue{
		db: db,
		q: goqite.New(goqite.NewOpts{
			DB:         db,
			Name:       name,
			MaxReceive: opts.MaxReceives,
			Timeout:    opts.Visibility,
		}),
		name:        name,
		visibility:  opts.Visibility,
		maxReceives: opts.MaxReceives,
		watch:       w,
		polling:     make(chan struct{}, 1),
	}
}

// DeadLetters returns the queue that holds messages received MaxReceives
// times without being deleted. It shares this queue's file; closing either
// closes both.
func (q *Queue) DeadLetters() *Queue {
	// A dead letter is never redriven further; an effectively unlimited
	// receive count keeps it receivable for inspection.
	dlq := newQueue(q.db, q.redrive.to, QueueOptions{Visibility: q.visibility, MaxReceives: 1 << 30}, q.watch)
	dlq.redrive = q.redrive
	return dlq
}

// Changed returns a channel that is closed at the next Send to the queue
// by any process.
func (q *Queue) Changed() <-chan struct{} { return q.watch.changed() }

// Close releases the file.
func (q *Queue) Close() error {
	q.watch.close()
	return q.db.Close()
}

// Send enqueues body.
func (q *Queue) Send(ctx context.Context, body []byte) error {
	if err := q.q.Send(ctx, goqite.Message{Body: body}); err != nil {
		return fmt.Errorf("sending to %s: %w", q.name, err)
	}
	q.watch.ring()
	return nil
}

// SendBatch implements events.Queue in one transaction: every body is
// sent, or none is and each is reported failed.
func (q *Queue) SendBatch(ctx context.Context, bodies [][]byte) error {
	if len(bodies) == 0 {
		return nil
	}
	err := q.inTx(ctx, func(tx *sql.Tx) error {
		for _, body := range bodies {
			if err := q.q.SendTx(ctx, tx, goqite.Message{Body: body}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sending to %s: %w", q.name, failAll(len(bodies), err))
	}
	q.watch.ring()
	return nil
}

// DeleteBatch implements events.Queue in one transaction, as SendBatch.
func (q *Queue) DeleteBatch(ctx context.Context, receipts []string) error {
	if len(receipts) == 0 {
		return nil
	}
	err := q.inTx(ctx, func(tx *sql.Tx) error {
		for _, r := range receipts {
			if err := q.q.DeleteTx(ctx, tx, goqite.ID(r)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return q.wrap("deleting from", failAll(len(receipts), err))
	}
	return nil
}

func (q *Queue) inTx(ctx context.Context, f func(*sql.Tx) error) error {
	tx, err := q.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := f(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// failAll reports every entry of a batch of n failed with err, as a
// transaction that did not commit leaves them.
func failAll(n int, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	failed := make(map[int]error, n)
	for i := range n {
		failed[i] = err
	}
	return &events.BatchError{Failed: failed}
}

// Receive implements events.Queue.
func (q *Queue) Receive(ctx context.Context, max int, wait time.Duration) ([]events.Message, error) {
	if max < 1 {
		return nil, fmt.Errorf("receiving from %s: max must be at least 1", q.name)
	}
	deadline := time.Now().Add(wait)
	if wait > 0 {
		// A short poll only looks, so it needs no turn.
		if !q.takeTurn(ctx, wait) {
			return nil, ctx.Err()
		}
		defer func() { <-q.polling }()
	}
	for {
		// Take the bell's channel before looking, so a send that lands
		// between the look and the wait still wakes us.
		rung := q.watch.changed()
		msgs, err := q.tryReceive(ctx, max)
		if err != nil || len(msgs) > 0 {
			return msgs, err
		}
		left := time.Until(deadline)
		if left <= 0 {
			return nil, nil
		}
		timer := time.NewTimer(min(left, pollFallback))
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, ctx.Err()
		case <-rung:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// takeTurn waits up to wait for this process's polling turn.
func (q *Queue) takeTurn(ctx context.Context, wait time.Duration) bool {
	select {
	case q.polling <- struct{}{}:
		return true
	default:
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case q.polling <- struct{}{}:
		return true
	case <-ctx.Done():
	case <-timer.C:
	}
	return false
}

func (q *Queue) tryReceive(ctx context.Context, max int) ([]events.Message, error) {
	if err := q.moveDeadLetters(ctx); err != nil {
		return nil, err
	}
	// A read is cheap and takes no lock; only contend for the write lock
	// when there is something to take.
	now := time.Now().UTC().Format(timeLayout)
	var ready bool
	err := q.db.QueryRowContext(ctx,
		`select exists (select 1 from goqite where queue = ? and timeout <= ? and received < ?)`,
		q.name, now, q.maxReceives).Scan(&ready)
	if err != nil || !ready {
		return nil, q.wrap("receiving from", err)
	}
	var msgs []events.Message
	for len(msgs) < max {
		m, err := q.q.Receive(ctx)
		if err != nil && len(msgs) == 0 {
			return nil, q.wrap("receiving from", err)
		}
		if err != nil || m == nil {
			break // hand over what is already ours; a lasting error recurs next time
		}
		msgs = append(msgs, events.Message{ID: string(m.ID), Body: m.Body, Receipt: string(m.ID)})
	}
	// Received messages are committed as ours: cancellation from here on
	// would strand them until their timeout.
	ctx = context.WithoutCancel(ctx)
	for i := range msgs {
		// goqite does not return the count; the message is ours until its
		// timeout, so this read cannot race with another receiver.
		err := q.db.QueryRowContext(ctx, `select received from goqite where id = ?`, msgs[i].ID).Scan(&msgs[i].ReceiveCount)
		if err != nil {
			msgs[i].ReceiveCount = 1 // unknown; the count only tunes retries
		}
	}
	return msgs, nil
}

// moveDeadLetters runs the redrive, at most once per redriveEvery in this
// process. Looking first keeps the write lock free when there is nothing
// to move, which is nearly always.
func (q *Queue) moveDeadLetters(ctx context.Context) error {
	r := q.redrive
	if r == nil {
		return nil
	}
	r.mu.Lock()
	due := time.Since(r.last) >= redriveEvery
	if due {
		r.last = time.Now()
	}
	r.mu.Unlock()
	if !due {
		return nil
	}
	now := time.Now().UTC().Format(timeLayout)
	var exhausted bool
	err := q.db.QueryRowContext(ctx,
		`select exists (select 1 from goqite where queue = ? and received >= ? and timeout <= ?)`,
		r.from, r.maxReceives, now).Scan(&exhausted)
	if err == nil && exhausted {
		_, err = q.db.ExecContext(ctx,
			`update goqite set queue = ?, received = 0, timeout = ? where queue = ? and received >= ? and timeout <= ?`,
			r.to, now, r.from, r.maxReceives, now)
	}
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("moving dead letters from queue %s to %s: %w", r.from, r.to, err)
}

// Extend implements events.Queue.
func (q *Queue) Extend(ctx context.Context, receipt string, d time.Duration) error {
	return q.wrap("extending a message in", q.q.Extend(ctx, goqite.ID(receipt), d))
}

// Delete implements events.Queue.
func (q *Queue) Delete(ctx context.Context, receipt string) error {
	return q.wrap("deleting from", q.q.Delete(ctx, goqite.ID(receipt)))
}

// Counts implements events.Queue. Messages waiting to move to the
// dead-letter queue count as neither visible nor in flight, as in SQS.
func (q *Queue) Counts(ctx context.Context) (events.Counts, error) {
	if err := q.moveDeadLetters(ctx); err != nil {
		return events.Counts{}, err
	}
	now := time.Now().UTC().Format(timeLayout)
	var c events.Counts
	err := q.db.QueryRowContext(ctx, `
		select
			coalesce(sum(timeout <= ? and received < ?), 0),
			coalesce(sum(timeout > ?), 0)
		from goqite where queue = ?`,
		now, q.maxReceives, now, q.name).Scan(&c.Visible, &c.InFlight)
	return c, q.wrap("counting", err)
}

func (q *Queue) wrap(doing string, err error) error {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("%s queue %s: %w", doing, q.name, err)
}

// watcher wakes long polls when the bell file is touched by any process.
type watcher struct {
	bell string
	fs   *fsnotify.Watcher
	done chan struct{}

	mu   sync.Mutex
	wake chan struct{}
}

func watch(bell string) (*watcher, error) {
	f, err := os.OpenFile(bell, os.O_CREATE|os.O_RDONLY, 0o640)
	if err != nil {
		return nil, err
	}
	f.Close()
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	if err := fw.Add(bell); err != nil {
		fw.Close()
		return nil, err
	}
	w := &watcher{bell: bell, fs: fw, done: make(chan struct{}), wake: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			select {
			case _, ok := <-fw.Events:
				if !ok {
					return
				}
				w.broadcast()
			case _, ok := <-fw.Errors:
				if !ok {
					return
				}
				// Events may have been dropped (inotify overflow): wake
				// everyone to look rather than let them sleep on a message.
				w.broadcast()
			}
		}
	}()
	return w, nil
}

// ring touches the bell. A failure only delays receivers until their next
// poll, so it is not an error.
func (w *watcher) ring() {
	now := time.Now()
	os.Chtimes(w.bell, now, now)
}

func (w *watcher) changed() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.wake
}

func (w *watcher) broadcast() {
	w.mu.Lock()
	close(w.wake)
	w.wake = make(chan struct{})
	w.mu.Unlock()
}

func (w *watcher) close() {
	w.fs.Close()
	<-w.done
}
