package testenv

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/surgeml/surge/events"
)

// RepliesSetup is a backend's reply queues for prefix "contract", seen by
// two processes (or clients) at once, as a web instance and a worker or
// the sweeper see them.
type RepliesSetup struct {
	Names       events.Names
	Mine, Other events.ReplyQueues
}

// ReplyQueuesContract checks a backend's events.ReplyQueues.
func ReplyQueuesContract(t *testing.T, open func(t *testing.T) RepliesSetup) {
	s := open(t)
	c := ctx(t)
	name := s.Names.ReplyQueue("i-0abc")

	for _, bad := range []string{s.Names.ResponseQueue, s.Names.RequestQueue, "other-resp-i-0abc", s.Names.ReplyQueuePrefix + "a/b"} {
		if _, err := s.Mine.Create(c, bad); err == nil {
			t.Errorf("Create(%q) made a queue outside the reply queues", bad)
		}
	}
	if _, err := s.Other.Open(c, name); !errors.Is(err, events.ErrNoQueue) {
		t.Fatalf("Open before Create: %v, want ErrNoQueue", err)
	}
	q, err := s.Mine.Create(c, name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Mine.Create(c, name); err != nil {
		t.Fatalf("Create of a queue that exists: %v", err)
	}
	names, err := s.Other.List(c)
	if err != nil || !slices.Contains(names, name) || slices.Contains(names, s.Names.ResponseQueue) {
		t.Fatalf("List: %v %v, want %s and not the shared queue", names, err, name)
	}

	theirs, err := s.Other.Open(c, name)
	if err != nil {
		t.Fatal(err)
	}
	if err := theirs.SendBatch(c, [][]byte{[]byte("a"), []byte("b")}); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for len(got) < 2 {
		msgs := receive(t, q, events.MaxBatch, 5*time.Second)
		if len(msgs) == 0 {
			t.Fatalf("received %v of what the other side sent", got)
		}
		for _, m := range msgs {
			got[string(m.Body)] = true
			if err := q.Delete(c, m.Receipt); err != nil {
				t.Fatal(err)
			}
		}
	}

	if tags, err := s.Other.Tags(c, name); err != nil || len(tags) != 0 {
		t.Fatalf("Tags of a new queue: %v %v", tags, err)
	}
	if err := s.Other.Tag(c, name, map[string]string{"k": "v", "x": "y"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Other.Tag(c, name, map[string]string{"x": ""}); err != nil {
		t.Fatal(err)
	}
	if tags, err := s.Mine.Tags(c, name); err != nil || len(tags) != 1 || tags["k"] != "v" {
		t.Fatalf("Tags after tagging k=v, x=y and removing x: %v %v", tags, err)
	}

	if err := s.Other.Delete(c, name); err != nil {
		t.Fatal(err)
	}
	if err := s.Other.Delete(c, name); err != nil {
		t.Fatalf("Delete of a queue already gone: %v", err)
	}
	// A backend may remember where a queue was (SQS: its URL); then the
	// send says it is gone.
	if gone, err := s.Mine.Open(c, name); err == nil {
		err = gone.SendBatch(c, [][]byte{[]byte("c")})
		if !errors.Is(err, events.ErrNoQueue) {
			t.Errorf("send after Delete by another process: %v, want ErrNoQueue", err)
		}
	} else if !errors.Is(err, events.ErrNoQueue) {
		t.Errorf("Open after Delete by another process: %v, want ErrNoQueue", err)
	}
	if _, err := s.Mine.Tags(c, name); !errors.Is(err, events.ErrNoQueue) {
		t.Errorf("Tags after Delete: %v, want ErrNoQueue", err)
	}
	if names, err := s.Mine.List(c); err != nil || slices.Contains(names, name) {
		t.Errorf("List after Delete: %v %v", names, err)
	}
}
