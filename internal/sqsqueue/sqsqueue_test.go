package sqsqueue_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/surgeml/surge/internal/awstest"
	"github.com/surgeml/surge/internal/queue/queuetest"
	"github.com/surgeml/surge/internal/sqsqueue"
)

// The adapter is tested against moto_server on loopback.
func TestMain(m *testing.M) { awstest.Main(m) }

var serial atomic.Int32

func TestContract(t *testing.T) {
	queuetest.Run(t, func(t *testing.T) queuetest.Setup {
		ctx := context.Background()
		name := fmt.Sprintf("contract-%d", serial.Add(1))
		dlq, err := sqsqueue.Create(ctx, awstest.Clients(t).SQS, sqsqueue.Spec{Name: name + "-dlq", Visibility: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		q, err := sqsqueue.Create(ctx, awstest.Clients(t).SQS, sqsqueue.Spec{Name: name, Visibility: time.Second, DeadLetter: dlq, MaxReceives: 3})
		if err != nil {
			t.Fatal(err)
		}
		return queuetest.Setup{Queue: q, DeadLetters: dlq, Visibility: time.Second, MaxReceives: 3}
	})
}

// The request queue refuses messages over 1024 bytes, as PROTOCOL.md asks.
func TestMaximumMessageSize(t *testing.T) {
	ctx := context.Background()
	q, err := sqsqueue.Create(ctx, awstest.Clients(t).SQS, sqsqueue.Spec{Name: "small", Visibility: time.Second, MaxMessageSize: 1024})
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
	if _, err := sqsqueue.Open(context.Background(), awstest.Clients(t).SQS, "no-such-queue"); err == nil || !strings.Contains(err.Error(), "no-such-queue") {
		t.Fatalf("Open of a missing queue: %v", err)
	}
}
