package backend_test

import (
	"context"
	"errors"
	"flag"
	"testing"
	"time"

	"github.com/surgeml/surge/events"
	"github.com/surgeml/surge/internal/backend"
)

func TestParseLatency(t *testing.T) {
	cases := []struct {
		in      string
		want    backend.Latency
		wantErr bool
	}{
		{in: "", want: backend.Latency{}},
		{in: "none", want: backend.Latency{}},
		{in: "aws", want: backend.AWSLatency()},
		{in: "sqs=20ms,s3=25ms,dynamodb=8ms", want: backend.Latency{SQS: 20 * time.Millisecond, S3: 25 * time.Millisecond, DynamoDB: 8 * time.Millisecond}},
		{in: "s3=1s, jitter=0.5", want: backend.Latency{S3: time.Second, Jitter: 0.5}},
		{in: "sqs=20", wantErr: true},
		{in: "sqs=-1ms", wantErr: true},
		{in: "sns=20ms", wantErr: true},
		{in: "sqs", wantErr: true},
		{in: "jitter=1.5", wantErr: true},
		{in: "jitter=x", wantErr: true},
	}
	for _, c := range cases {
		got, err := backend.ParseLatency(c.in)
		if (err != nil) != c.wantErr {
			t.Errorf("ParseLatency(%q) error = %v, want error %v", c.in, err, c.wantErr)
			continue
		}
		if got != c.want {
			t.Errorf("ParseLatency(%q) = %+v, want %+v", c.in, got, c.want)
		}
		if err == nil {
			// What String prints, ParseLatency reads back: localrun passes
			// it to the tiers' command lines.
			again, err := backend.ParseLatency(got.String())
			if err != nil || again != got {
				t.Errorf("ParseLatency(%q.String() = %q) = %+v, %v", c.in, got.String(), again, err)
			}
		}
	}
}

// openSlow opens the local backends as a tier does, from its flags.
func openSlow(t *testing.T, latency string) *backend.Backends {
	t.Helper()
	fs := flag.NewFlagSet("tier", flag.ContinueOnError)
	cfg := backend.Flags(fs)
	if err := fs.Parse([]string{"-data", t.TempDir(), "-latency", latency}); err != nil {
		t.Fatal(err)
	}
	b, err := backend.Open(t.Context(), *cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// took runs f and returns how long it took.
func took(f func()) time.Duration {
	start := time.Now()
	f()
	return time.Since(start)
}

func TestLatencyDelaysEveryCallByItsService(t *testing.T) {
	const sqs, s3, ddb = 60 * time.Millisecond, 90 * time.Millisecond, 30 * time.Millisecond
	b := openSlow(t, "sqs=60ms,s3=90ms,dynamodb=30ms")
	ctx := t.Context()
	var msgs []events.Message
	calls := []struct {
		name string
		min  time.Duration
		call func() error
	}{
		{"queue send", sqs, func() error { return b.Requests.Send(ctx, []byte("hello")) }},
		{"queue counts", sqs, func() error { _, err := b.Requests.Counts(ctx); return err }},
		{"queue receive", sqs, func() (err error) { msgs, err = b.Requests.Receive(ctx, 1, 0); return err }},
		{"queue extend", sqs, func() error { return b.Requests.Extend(ctx, msgs[0].Receipt, time.Minute) }},
		{"queue delete", sqs, func() error { return b.Requests.Delete(ctx, msgs[0].Receipt) }},
		{"response queue send", sqs, func() error { return b.Responses.Send(ctx, []byte("x")) }},
		{"bucket put", s3, func() error { return b.Inputs.Put(ctx, "a.jpg", []byte("img")) }},
		{"bucket get", s3, func() error { _, err := b.Inputs.Get(ctx, "a.jpg"); return err }},
		{"bucket list", s3, func() error { _, err := b.Inputs.List(ctx); return err }},
		{"bucket delete", s3, func() error { return b.Inputs.Delete(ctx, "a.jpg") }},
		{"output bucket put", s3, func() error { return b.Outputs.Put(ctx, "a", []byte("label")) }},
		{"table put", ddb, func() error { return b.Table.Put(ctx, events.Item{Name: "a.jpg", Stem: "a", Label: "cat"}) }},
		{"table get", ddb, func() error { _, err := b.Table.Get(ctx, "a.jpg"); return err }},
	}
	for _, c := range calls {
		var err error
		d := took(func() { err = c.call() })
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if d < c.min {
			t.Errorf("%s took %v, want at least its round trip %v", c.name, d, c.min)
		}
	}
	if len(msgs) != 1 || string(msgs[0].Body) != "hello" {
		t.Fatalf("received %+v, want the message sent", msgs)
	}
}

func TestLatencyLongPollPaysOneRoundTrip(t *testing.T) {
	b := openSlow(t, "sqs=100ms")
	const wait = 300 * time.Millisecond
	var msgs []events.Message
	var err error
	d := took(func() { msgs, err = b.Requests.Receive(t.Context(), 1, wait) })
	if err != nil || len(msgs) != 0 {
		t.Fatalf("empty long poll = %v, %v", msgs, err)
	}
	// One round trip on top of the wait; a wrapper that delayed each
	// check inside the poll, or the wait itself, would take 400 ms more.
	if d < wait+100*time.Millisecond || d > wait+300*time.Millisecond {
		t.Errorf("an empty %v long poll took %v, want the wait plus one 100ms round trip", wait, d)
	}

	// A message sent during the poll ends it early: the poll is not made
	// to wait out its full time by the wrapper.
	go func() {
		time.Sleep(50 * time.Millisecond)
		b.Responses.Send(context.WithoutCancel(t.Context()), []byte("late"))
	}()
	d = took(func() { msgs, err = b.Responses.Receive(t.Context(), 1, 5*time.Second) })
	if err != nil || len(msgs) != 1 {
		t.Fatalf("long poll with a message sent meanwhile = %v, %v", msgs, err)
	}
	if d > 2*time.Second {
		t.Errorf("a long poll answered by a message sent meanwhile took %v, want well under its 5s wait", d)
	}
}

func TestLatencyPassesErrorsThrough(t *testing.T) {
	b := openSlow(t, "s3=20ms,dynamodb=20ms,sqs=20ms")
	ctx := t.Context()
	if _, err := b.Inputs.Get(ctx, "missing.jpg"); !errors.Is(err, events.ErrNoObject) {
		t.Errorf("Get of a missing object: %v, want ErrNoObject", err)
	}
	if _, err := b.Table.Get(ctx, "missing.jpg"); !errors.Is(err, events.ErrNoItem) {
		t.Errorf("table Get of a missing item: %v, want ErrNoItem", err)
	}

	// A caller that gives up during the way out sends nothing.
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := b.Requests.Send(cancelled, []byte("never")); !errors.Is(err, context.Canceled) {
		t.Errorf("Send on a cancelled context: %v, want context.Canceled", err)
	}
	c, err := b.Requests.Counts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c.Visible != 0 {
		t.Errorf("after a cancelled Send the queue holds %d messages, want 0", c.Visible)
	}
}

func TestNoLatencyLeavesBackendsUnwrapped(t *testing.T) {
	b := openSlow(t, "none")
	if _, ok := b.Requests.(interface{ Changed() <-chan struct{} }); !ok {
		t.Errorf("with no latency the request queue is %T, want the embedded queue itself", b.Requests)
	}
}
