// Contract every results table backend must
// meet.

package testenv

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/surgeml/surge/events"
)

// TableContract checks a backend. open must return a new, empty table each call.
func TableContract(t *testing.T, open func(t *testing.T) events.Table) {
	ctx := context.Background()
	at := time.Date(2026, 11, 26, 13, 0, 0, 123456789, time.UTC)
	paul := events.Item{Name: "test_00.jpg", Stem: "test_00", Label: "Paul", Score: 0.987654321, Model: "m+gallery", SHA256: sha('a'), Time: at}

	t.Run("RoundTrip", func(t *testing.T) {
		tab := open(t)
		if err := tab.Put(ctx, paul); err != nil {
			t.Fatal(err)
		}
		got, err := tab.Get(ctx, paul.Name)
		if err != nil || !same(got, paul) {
			t.Fatalf("Get = %+v, %v; want %+v", got, err, paul)
		}
	})

	t.Run("Missing", func(t *testing.T) {
		tab := open(t)
		if _, err := tab.Get(ctx, "never.jpg"); !errors.Is(err, events.ErrNoItem) {
			t.Fatalf("Get of a missing name: %v, want ErrNotFound", err)
		}
	})

	t.Run("PutReplaces", func(t *testing.T) {
		tab := open(t)
		emily := paul
		emily.Label, emily.SHA256, emily.Score = "Emily", sha('b'), 0.5
		for _, it := range []events.Item{paul, emily} {
			if err := tab.Put(ctx, it); err != nil {
				t.Fatal(err)
			}
		}
		got, err := tab.Get(ctx, paul.Name)
		if err != nil || !same(got, emily) {
			t.Fatalf("Get after replacing = %+v, %v; want %+v", got, err, emily)
		}
	})

	// A mark (no label) never replaces the answer for the same bytes,
	// which a worker may record before the web tier marks the upload;
	// it replaces anything else.
	t.Run("Mark", func(t *testing.T) {
		tab := open(t)
		mark := events.Item{Name: paul.Name, Stem: paul.Stem, SHA256: paul.SHA256, Time: at}
		if err := tab.Mark(ctx, mark); err != nil {
			t.Fatal(err)
		}
		if got, err := tab.Get(ctx, paul.Name); err != nil || !same(got, mark) {
			t.Fatalf("after marking a new name: %+v, %v", got, err)
		}
		if err := tab.Put(ctx, paul); err != nil {
			t.Fatal(err)
		}
		if err := tab.Mark(ctx, mark); err != nil {
			t.Fatalf("marking an answered upload: %v, want no error", err)
		}
		if got, err := tab.Get(ctx, paul.Name); err != nil || !same(got, paul) {
			t.Fatalf("a mark replaced the answer for the same bytes: %+v, %v", got, err)
		}
		other := mark
		other.SHA256 = sha('c')
		if err := tab.Mark(ctx, other); err != nil {
			t.Fatal(err)
		}
		if got, err := tab.Get(ctx, paul.Name); err != nil || !same(got, other) {
			t.Fatalf("a mark for new bytes under the name: %+v, %v; want the mark", got, err)
		}
	})

	t.Run("OddNames", func(t *testing.T) {
		tab := open(t)
		for _, name := range []string{"a.b.c.jpg", "naïve café.jpeg", "'; DROP TABLE x; --.png", "semi:colon.jpg", "\uFFFD.jpg"} {
			it := paul
			it.Name, it.Stem = name, name
			if err := tab.Put(ctx, it); err != nil {
				t.Fatalf("Put %q: %v", name, err)
			}
			if got, err := tab.Get(ctx, name); err != nil || !same(got, it) {
				t.Fatalf("Get %q = %+v, %v", name, got, err)
			}
		}
	})

	t.Run("Concurrent", func(t *testing.T) {
		tab := open(t)
		var wg sync.WaitGroup
		errs := make(chan error, 20)
		for i := range 20 {
			wg.Go(func() {
				it := paul
				it.Name = fmt.Sprintf("test_%02d.jpg", i)
				if err := tab.Put(ctx, it); err != nil {
					errs <- err
					return
				}
				if _, err := tab.Get(ctx, it.Name); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})
}

func sha(c byte) string {
	b := make([]byte, 64)
	for i := range b {
		b[i] = c
	}
	return string(b)
}

// same compares items with times to the millisecond: backends keep at
// least that much.
func same(a, b events.Item) bool {
	if a.Time.Truncate(time.Millisecond).Equal(b.Time.Truncate(time.Millisecond)) {
		a.Time = b.Time
	}
	return a == b
}
