// Contract every queue backend must meet. Backends
// run it from their own tests against a real instance of the service.

package testenv

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/surgeml/surge/events"
)

// QueueSetup is a fresh, empty queue and its dead-letter queue, configured with
// the given visibility timeout and receive limit.
type QueueSetup struct {
	Queue       events.Queue
	DeadLetters events.Queue
	Visibility  time.Duration
	MaxReceives int
}

// QueueContract checks SQS semantics. open must return a new, empty queue each call.
// The cases wait out timeouts rather than compute, each on its own queue,
// so they run side by side: the suite takes as long as its longest case.
func QueueContract(t *testing.T, open func(t *testing.T) QueueSetup) {
	for _, c := range []struct {
		name  string
		check func(*testing.T, QueueSetup)
	}{
		{"SendReceiveDelete", sendReceiveDelete},
		{"InvisibleWhileInFlight", invisibleWhileInFlight},
		{"RedeliveryAfterTimeout", redelivery},
		{"ExtendKeepsHidden", extend},
		{"LongPollWakesOnSend", longPoll},
		{"LongPollEndsEmpty", longPollEmpty},
		{"CancelStopsWaiting", cancel},
		{"Batch", batch},
		{"SendBatchDeleteBatch", sendDeleteBatch},
		{"EmptyBatches", emptyBatches},
		{"DeadLetterAfterMaxReceives", deadLetter},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.check(t, open(t))
		})
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

func send(t *testing.T, q events.Queue, bodies ...string) {
	t.Helper()
	for _, b := range bodies {
		if err := q.Send(ctx(t), []byte(b)); err != nil {
			t.Fatalf("Send(%q): %v", b, err)
		}
	}
}

func receive(t *testing.T, q events.Queue, max int, wait time.Duration) []events.Message {
	t.Helper()
	msgs, err := q.Receive(ctx(t), max, wait)
	if err != nil {
		t.Fatalf("Receive: %v", err)
	}
	return msgs
}

func one(t *testing.T, q events.Queue, wait time.Duration) events.Message {
	t.Helper()
	msgs := receive(t, q, 1, wait)
	if len(msgs) != 1 {
		t.Fatalf("Receive got %d messages, want 1", len(msgs))
	}
	return msgs[0]
}

// eventuallyCounts polls because SQS counts are approximate and lag.
func eventuallyCounts(t *testing.T, q events.Queue, want events.Counts) {
	t.Helper()
	var got events.Counts
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		var err error
		if got, err = q.Counts(ctx(t)); err != nil {
			t.Fatalf("Counts: %v", err)
		}
		if got == want {
			return
		}
	}
	t.Fatalf("Counts = %+v, want %+v", got, want)
}

func sendReceiveDelete(t *testing.T, s QueueSetup) {
	send(t, s.Queue, `{"hello":"world"}`)
	eventuallyCounts(t, s.Queue, events.Counts{Visible: 1})
	m := one(t, s.Queue, 5*time.Second)
	if string(m.Body) != `{"hello":"world"}` || m.ReceiveCount != 1 || m.Receipt == "" || m.ID == "" {
		t.Fatalf("received %+v", m)
	}
	if err := s.Queue.Delete(ctx(t), m.Receipt); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	eventuallyCounts(t, s.Queue, events.Counts{})
	if msgs := receive(t, s.Queue, 1, 0); len(msgs) != 0 {
		t.Fatalf("deleted message received again: %+v", msgs)
	}
}

func invisibleWhileInFlight(t *testing.T, s QueueSetup) {
	send(t, s.Queue, "a")
	m := one(t, s.Queue, 5*time.Second)
	eventuallyCounts(t, s.Queue, events.Counts{InFlight: 1})
	if msgs := receive(t, s.Queue, 1, s.Visibility/4); len(msgs) != 0 {
		t.Fatalf("in-flight message %s delivered twice: %+v", m.ID, msgs)
	}
}

func redelivery(t *testing.T, s QueueSetup) {
	send(t, s.Queue, "a")
	first := one(t, s.Queue, 5*time.Second)
	start := time.Now()
	second := one(t, s.Queue, s.Visibility+5*time.Second)
	if since := time.Since(start); since < s.Visibility*9/10 {
		t.Fatalf("redelivered after %v, visibility is %v", since, s.Visibility)
	}
	if second.ID != first.ID || second.ReceiveCount != 2 {
		t.Fatalf("redelivered %+v after %+v", second, first)
	}
	if err := s.Queue.Delete(ctx(t), second.Receipt); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	eventuallyCounts(t, s.Queue, events.Counts{})
}

func extend(t *testing.T, s QueueSetup) {
	send(t, s.Queue, "a")
	m := one(t, s.Queue, 5*time.Second)
	if err := s.Queue.Extend(ctx(t), m.Receipt, 3*s.Visibility); err != nil {
		t.Fatalf("Extend: %v", err)
	}
	if msgs := receive(t, s.Queue, 1, 2*s.Visibility); len(msgs) != 0 {
		t.Fatalf("extended message delivered again: %+v", msgs)
	}
	if err := s.Queue.Delete(ctx(t), m.Receipt); err != nil {
		t.Fatalf("Delete: %v", err)
	}
}

func longPoll(t *testing.T, s QueueSetup) {
	got := make(chan []events.Message, 1)
	errs := make(chan error, 1)
	go func() {
		msgs, err := s.Queue.Receive(ctx(t), 1, 10*time.Second)
		got <- msgs
		errs <- err
	}()
	time.Sleep(500 * time.Millisecond)
	sent := time.Now()
	send(t, s.Queue, "late")
	msgs := <-got
	if err := <-errs; err != nil {
		t.Fatalf("Receive: %v", err)
	}
	if len(msgs) != 1 || string(msgs[0].Body) != "late" {
		t.Fatalf("long poll got %+v", msgs)
	}
	if waited := time.Since(sent); waited > 2*time.Second {
		t.Fatalf("long poll answered %v after the send", waited)
	}
}

func longPollEmpty(t *testing.T, s QueueSetup) {
	start := time.Now()
	msgs := receive(t, s.Queue, 1, time.Second)
	if len(msgs) != 0 {
		t.Fatalf("empty queue gave %+v", msgs)
	}
	if waited := time.Since(start); waited < 900*time.Millisecond || waited > 5*time.Second {
		t.Fatalf("1s long poll on an empty queue took %v", waited)
	}
}

func cancel(t *testing.T, s QueueSetup) {
	c, stop := context.WithCancel(ctx(t))
	done := make(chan error, 1)
	go func() {
		_, err := s.Queue.Receive(c, 1, 20*time.Second)
		done <- err
	}()
	time.Sleep(200 * time.Millisecond)
	stop()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Receive ignored cancellation")
	}
}

func batch(t *testing.T, s QueueSetup) {
	want := []string{"0", "1", "2", "3", "4"}
	send(t, s.Queue, want...)
	var got []string
	for deadline := time.Now().Add(20 * time.Second); len(got) < len(want) && time.Now().Before(deadline); {
		msgs := receive(t, s.Queue, 3, time.Second)
		if len(msgs) > 3 {
			t.Fatalf("asked for 3, got %d", len(msgs))
		}
		for _, m := range msgs {
			got = append(got, string(m.Body))
			if err := s.Queue.Delete(ctx(t), m.Receipt); err != nil {
				t.Fatalf("Delete: %v", err)
			}
		}
	}
	sort.Strings(got)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("received %v, want %v", got, want)
	}
}

// More than two SQS batches' worth go out in SendBatch, each exactly once,
// and one DeleteBatch removes them all.
func sendDeleteBatch(t *testing.T, s QueueSetup) {
	var want []string
	var bodies [][]byte
	for i := range 2*events.MaxBatch + 3 {
		want = append(want, fmt.Sprintf("m%02d", i))
		bodies = append(bodies, []byte(want[i]))
	}
	if err := s.Queue.SendBatch(ctx(t), bodies); err != nil {
		t.Fatalf("SendBatch: %v", err)
	}
	eventuallyCounts(t, s.Queue, events.Counts{Visible: len(want)})
	var got, receipts []string
	for deadline := time.Now().Add(20 * time.Second); len(got) < len(want) && time.Now().Before(deadline); {
		for _, m := range receive(t, s.Queue, events.MaxBatch, time.Second) {
			got = append(got, string(m.Body))
			receipts = append(receipts, m.Receipt)
		}
	}
	sort.Strings(got)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("received %v, want %v", got, want)
	}
	if err := s.Queue.DeleteBatch(ctx(t), receipts); err != nil {
		t.Fatalf("DeleteBatch: %v", err)
	}
	eventuallyCounts(t, s.Queue, events.Counts{})
	if msgs := receive(t, s.Queue, events.MaxBatch, 0); len(msgs) != 0 {
		t.Fatalf("batch-deleted messages received again: %+v", msgs)
	}
}

// SQS refuses an empty batch (EmptyBatchRequest); callers with nothing
// to send or delete need not check.
func emptyBatches(t *testing.T, s QueueSetup) {
	if err := s.Queue.SendBatch(ctx(t), nil); err != nil {
		t.Errorf("SendBatch(nil): %v", err)
	}
	if err := s.Queue.DeleteBatch(ctx(t), []string{}); err != nil {
		t.Errorf("DeleteBatch(none): %v", err)
	}
	eventuallyCounts(t, s.Queue, events.Counts{})
}

func deadLetter(t *testing.T, s QueueSetup) {
	send(t, s.Queue, "poison")
	for i := 1; i <= s.MaxReceives; i++ {
		m := one(t, s.Queue, s.Visibility+5*time.Second)
		if m.ReceiveCount != i {
			t.Fatalf("delivery %d has ReceiveCount %d", i, m.ReceiveCount)
		}
	}
	// The last delivery times out; the message must move, not come back.
	if msgs := receive(t, s.Queue, 1, s.Visibility+2*time.Second); len(msgs) != 0 {
		t.Fatalf("message delivered %d times, limit %d", s.MaxReceives+1, s.MaxReceives)
	}
	dead := one(t, s.DeadLetters, 5*time.Second)
	if string(dead.Body) != "poison" {
		t.Fatalf("dead-letter queue holds %q", dead.Body)
	}
	eventuallyCounts(t, s.Queue, events.Counts{})
}
