package aws_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/surgeml/surge/events"
	"github.com/surgeml/surge/internal/aws"
	"github.com/surgeml/surge/internal/moto"
	"github.com/surgeml/surge/internal/testenv"
)

// The adapter is tested against moto_server on loopback.

func TestQueueContract(t *testing.T) {
	testenv.QueueContract(t, func(t *testing.T) testenv.QueueSetup {
		ctx := context.Background()
		name := fmt.Sprintf("contract-%d", serial.Add(1))
		dlq, err := aws.CreateQueue(ctx, moto.Clients(t).SQS, aws.QueueSpec{Name: name + "-dlq", Visibility: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		q, err := aws.CreateQueue(ctx, moto.Clients(t).SQS, aws.QueueSpec{Name: name, Visibility: time.Second, DeadLetter: dlq, MaxReceives: 3})
		if err != nil {
			t.Fatal(err)
		}
		return testenv.QueueSetup{Queue: q, DeadLetters: dlq, Visibility: time.Second, MaxReceives: 3}
	})
}

// The request queue refuses messages over 1024 bytes, as docs/protocol.md asks.
func TestMaximumMessageSize(t *testing.T) {
	ctx := context.Background()
	q, err := aws.CreateQueue(ctx, moto.Clients(t).SQS, aws.QueueSpec{Name: "small", Visibility: time.Second, MaxMessageSize: 1024})
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Send(ctx, []byte(strings.Repeat("x", 1024))); err != nil {
		t.Fatalf("1024 bytes: %v", err)
	}
	if err := q.Send(ctx, []byte(strings.Repeat("x", 1025))); err == nil {
		t.Fatal("1025 bytes accepted")
	}
}

func TestOpenMissingQueue(t *testing.T) {
	if _, err := aws.OpenQueue(context.Background(), moto.Clients(t).SQS, "no-such-queue"); err == nil || !strings.Contains(err.Error(), "no-such-queue") {
		t.Fatalf("Open of a missing queue: %v", err)
	}
}

// A long poll its client abandoned still takes a message on the server;
// held briefly, the message comes back in seconds, not after the queue's
// visibility timeout.
func TestAbandonedPollReleasesSoon(t *testing.T) {
	ctx := context.Background()
	c := moto.Clients(t).SQS
	q, err := aws.CreateQueue(ctx, c, aws.QueueSpec{Name: fmt.Sprintf("held-%d", serial.Add(1)), Visibility: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	abandoned, cancel := context.WithCancel(ctx)
	go func() {
		time.Sleep(300 * time.Millisecond)
		cancel() // the worker stops mid-poll
	}()
	q.HoldReceived(time.Second)
	if _, err := q.Receive(abandoned, 1, 5*time.Second); err == nil {
		t.Fatal("the cancelled poll returned")
	}
	if err := q.Send(ctx, []byte("late")); err != nil {
		t.Fatal(err)
	}
	// The server's side of the poll takes the message; it is back after
	// the hold.
	time.Sleep(500 * time.Millisecond)
	start := time.Now()
	msgs, err := q.Receive(ctx, 1, 20*time.Second)
	if err != nil || len(msgs) != 1 || string(msgs[0].Body) != "late" {
		t.Fatalf("%v, %v", msgs, err)
	}
	t.Logf("back after %v (receive count %d)", time.Since(start).Round(100*time.Millisecond), msgs[0].ReceiveCount)
	if waited := time.Since(start); waited > 10*time.Second {
		t.Fatalf("the message took %v to come back", waited)
	}
}

// SQS answers a batch with per-entry results: a bad entry fails alone,
// named by its index, and the rest of the batch takes effect.
func TestDeleteBatchReportsFailedEntries(t *testing.T) {
	ctx := context.Background()
	q, err := aws.CreateQueue(ctx, moto.Clients(t).SQS, aws.QueueSpec{Name: fmt.Sprintf("partial-%d", serial.Add(1)), Visibility: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := q.SendBatch(ctx, [][]byte{[]byte("a"), []byte("b")}); err != nil {
		t.Fatal(err)
	}
	var receipts []string
	for deadline := time.Now().Add(10 * time.Second); len(receipts) < 2 && time.Now().Before(deadline); {
		msgs, err := q.Receive(ctx, 10, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			receipts = append(receipts, m.Receipt)
		}
	}
	if len(receipts) != 2 {
		t.Fatalf("received %d of 2", len(receipts))
	}
	err = q.DeleteBatch(ctx, []string{receipts[0], "not-a-receipt", receipts[1]})
	var be *events.BatchError
	if !errors.As(err, &be) || len(be.Failed) != 1 || be.Failed[1] == nil || !strings.Contains(be.Failed[1].Error(), "ReceiptHandleIsInvalid") {
		t.Fatalf("DeleteBatch with a bad receipt at index 1: %v, want entry 1 failed with ReceiptHandleIsInvalid", err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		c, err := q.Counts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if c == (events.Counts{}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the good entries were not deleted: %+v", c)
		}
	}
}

func TestReplyQueuesContract(t *testing.T) {
	testenv.ReplyQueuesContract(t, func(t *testing.T) testenv.RepliesSetup {
		names := events.NamesFor(fmt.Sprintf("contract%d", serial.Add(1)))
		return testenv.RepliesSetup{Names: names,
			Mine: aws.NewReplyQueues(moto.Clients(t).SQS, names), Other: aws.NewReplyQueues(moto.Clients(t).SQS, names)}
	})
}

// A send to a reply queue deleted since it was opened fails with
// events.ErrNoQueue, which is what sends a worker's answer to the shared
// queue instead.
func TestSendToDeletedReplyQueue(t *testing.T) {
	ctx := context.Background()
	names := events.NamesFor("gone")
	mine, other := aws.NewReplyQueues(moto.Clients(t).SQS, names), aws.NewReplyQueues(moto.Clients(t).SQS, names)
	if _, err := mine.Create(ctx, names.ReplyQueue("i-1")); err != nil {
		t.Fatal(err)
	}
	q, err := other.Open(ctx, names.ReplyQueue("i-1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := mine.Delete(ctx, names.ReplyQueue("i-1")); err != nil {
		t.Fatal(err)
	}
	if err := q.SendBatch(ctx, [][]byte{[]byte("x")}); !errors.Is(err, events.ErrNoQueue) {
		t.Errorf("SendBatch to a deleted queue: %v, want ErrNoQueue", err)
	}
	if err := q.Send(ctx, []byte("x")); !errors.Is(err, events.ErrNoQueue) {
		t.Errorf("Send to a deleted queue: %v, want ErrNoQueue", err)
	}
}
