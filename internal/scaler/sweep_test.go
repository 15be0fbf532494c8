package scaler

import (
	"context"
	"log/slog"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/surgeml/surge/events"
	"github.com/surgeml/surge/internal/embedded"
)

// The sweeper, on the embedded backends a local system runs on: a gone
// web tier's reply queue is drained into the shared queue, its results
// stripped of their reply queue, and deleted only once it has been empty
// for the grace period; a live tier's queue is left alone.
func TestSweeperDrainsThenDeletesGoneInstancesQueues(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	qdir := filepath.Join(dir, "queues")
	names := events.NamesFor("surge")
	replies := embedded.NewReplyQueues(qdir, names)
	t.Cleanup(func() { replies.Close() })
	shared, err := embedded.OpenQueue(ctx, qdir, names.ResponseQueue, embedded.QueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shared.Close() })

	lock, err := embedded.LockDir(dir, embedded.WebTierLock("alive"), "test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lock.Release() })
	alive, dead := names.ReplyQueue("alive"), names.ReplyQueue("dead")
	for _, name := range []string{alive, dead} {
		q, err := replies.Create(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		var bodies [][]byte
		for i := range 3 {
			b, err := events.EncodeResult(events.Result{V: events.Version, ID: name + string(rune('a'+i)), Stem: "s", Label: "l", ReplyTo: name})
			if err != nil {
				t.Fatal(err)
			}
			bodies = append(bodies, b)
		}
		if err := q.SendBatch(ctx, bodies); err != nil {
			t.Fatal(err)
		}
	}

	now := time.Now()
	sw := NewSweeper(names, replies, shared, embedded.WebTiers{Dir: dir}, time.Minute, slog.New(slog.DiscardHandler))
	sw.now = func() time.Time { return now }
	sweep := func(want Swept) {
		t.Helper()
		got, err := sw.Sweep(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got.Queues != want.Queues || got.Dead != want.Dead || got.Moved != want.Moved || !slices.Equal(got.Deleted, want.Deleted) {
			t.Fatalf("sweep: %+v, want %+v", got, want)
		}
	}
	sweep(Swept{Queues: 2, Dead: 1, Moved: 3})
	sweep(Swept{Queues: 2, Dead: 1}) // empty from now on
	// A late answer restarts the clock.
	late, err := replies.Open(ctx, dead)
	if err != nil {
		t.Fatal(err)
	}
	if err := late.Send(ctx, []byte("not a result")); err != nil {
		t.Fatal(err)
	}
	now = now.Add(59 * time.Second)
	sweep(Swept{Queues: 2, Dead: 1, Moved: 1})
	sweep(Swept{Queues: 2, Dead: 1})
	now = now.Add(59 * time.Second)
	sweep(Swept{Queues: 2, Dead: 1})
	now = now.Add(2 * time.Second)
	sweep(Swept{Queues: 2, Dead: 1, Deleted: []string{dead}})
	sweep(Swept{Queues: 1})

	msgs, err := shared.Receive(ctx, events.MaxBatch, time.Second)
	if err != nil || len(msgs) != 4 {
		t.Fatalf("shared queue: %d messages %v, want the 4 moved", len(msgs), err)
	}
	for _, m := range msgs {
		if string(m.Body) == "not a result" {
			continue // moved as it was, for a web tier to log
		}
		if res, err := events.DecodeResult(m.Body); err != nil || res.ReplyTo != "" {
			t.Errorf("moved result %s: %+v %v, want it without its gone reply queue", m.Body, res, err)
		}
	}
	q, err := replies.Open(ctx, alive)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := q.Counts(ctx); err != nil || c.Visible != 3 {
		t.Errorf("the live tier's queue: %+v %v, want its 3 results untouched", c, err)
	}
}
