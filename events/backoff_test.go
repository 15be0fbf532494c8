package events

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	b := Backoff{Min: 100 * time.Millisecond, Max: time.Second}
	var got []time.Duration
	for range 6 {
		got = append(got, b.Failure())
	}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i := range want {
		if got[i] != want[i]*time.Millisecond {
			t.Fatalf("delays %v, want %v ms", got, want)
		}
	}
	b.Success()
	if d := b.Failure(); d != 100*time.Millisecond {
		t.Fatalf("after a success: %v", d)
	}
}

func TestSleepEndsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	Sleep(ctx, time.Hour)
	if time.Since(start) > time.Second {
		t.Fatal("Sleep ignored a cancelled context")
	}
}

func TestAfter(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	b := Backoff{Min: 10 * time.Millisecond, Max: time.Second}
	ctx := context.Background()

	start := time.Now()
	b.After(ctx, errors.New("queue down"), log, "receiving")
	if time.Since(start) < 10*time.Millisecond {
		t.Fatal("a failure was not waited out")
	}
	if !strings.Contains(logs.String(), "receiving") || !strings.Contains(logs.String(), "queue down") {
		t.Fatalf("failure not logged: %q", logs.String())
	}
	b.After(ctx, nil, log, "receiving")
	if d := b.Failure(); d != 10*time.Millisecond {
		t.Fatalf("a success did not reset the delay: next is %v", d)
	}

	logs.Reset()
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	b.After(cancelled, context.Canceled, log, "receiving")
	if logs.Len() != 0 {
		t.Fatalf("an ended context was logged as a failure: %q", logs.String())
	}
}
