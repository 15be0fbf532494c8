// Contract every object store backend must meet.

package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/surgeml/surge/events"
)

// StoreContract checks a backend. open must return a new, empty bucket each call.
func StoreContract(t *testing.T, open func(t *testing.T) events.Store) {
	ctx := context.Background()

	t.Run("RoundTrip", func(t *testing.T) {
		s := open(t)
		body := []byte("\xff\xd8\xff\xe0 not really a jpeg")
		if err := s.Put(ctx, "test_00.jpg", body); err != nil {
			t.Fatal(err)
		}
		got, err := s.Get(ctx, "test_00.jpg")
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("Get = %q, %v", got, err)
		}
	})

	t.Run("Overwrite", func(t *testing.T) {
		s := open(t)
		for _, v := range []string{"Paul", "Emily"} {
			if err := s.Put(ctx, "test_00", []byte(v)); err != nil {
				t.Fatal(err)
			}
		}
		got, err := s.Get(ctx, "test_00")
		if err != nil || string(got) != "Emily" {
			t.Fatalf("Get = %q, %v", got, err)
		}
		keys, err := s.List(ctx)
		if err != nil || !slices.Equal(keys, []string{"test_00"}) {
			t.Fatalf("List = %v, %v", keys, err)
		}
	})

	t.Run("Missing", func(t *testing.T) {
		s := open(t)
		if _, err := s.Get(ctx, "nope"); !errors.Is(err, events.ErrNoObject) {
			t.Fatalf("Get of a missing key: %v, want ErrNotFound", err)
		}
		if err := s.Delete(ctx, "nope"); err != nil {
			t.Fatalf("Delete of a missing key: %v", err)
		}
	})

	t.Run("ListAndDelete", func(t *testing.T) {
		s := open(t)
		want := []string{"a b (1).png", "test_0.JPEG", "ünï.jpg"}
		for _, k := range want {
			if err := s.Put(ctx, k, []byte(k)); err != nil {
				t.Fatal(err)
			}
		}
		keys, err := s.List(ctx)
		if err != nil || !slices.Equal(keys, want) {
			t.Fatalf("List = %q, %v; want %q", keys, err, want)
		}
		if err := s.Delete(ctx, "test_0.JPEG"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get(ctx, "test_0.JPEG"); !errors.Is(err, events.ErrNoObject) {
			t.Fatalf("Get after Delete: %v", err)
		}
	})

	t.Run("RefusesUnsanitisedKeys", func(t *testing.T) {
		s := open(t)
		for _, k := range []string{"", "../escape", "a/b", ".hidden", "nul\x00"} {
			if err := s.Put(ctx, k, []byte("x")); err == nil {
				t.Errorf("Put(%q) accepted", k)
			}
			if _, err := s.Get(ctx, k); err == nil || errors.Is(err, events.ErrNoObject) {
				t.Errorf("Get(%q) = %v, want a refusal", k, err)
			}
		}
	})

	t.Run("ConcurrentWritersNeverTear", func(t *testing.T) {
		s := open(t)
		bodies := [][]byte{bytes.Repeat([]byte("a"), 1<<16), bytes.Repeat([]byte("b"), 1<<16)}
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		for i := range 16 {
			wg.Go(func() {
				for range 8 {
					if err := s.Put(ctx, "same", bodies[i%2]); err != nil {
						errs <- err
						return
					}
					got, err := s.Get(ctx, "same")
					if err != nil {
						errs <- err
						return
					}
					if !bytes.Equal(got, bodies[0]) && !bytes.Equal(got, bodies[1]) {
						errs <- fmt.Errorf("torn read: %d bytes", len(got))
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		keys, err := s.List(ctx)
		if err != nil || !slices.Equal(keys, []string{"same"}) {
			t.Fatalf("List after concurrent writes = %q, %v", keys, err)
		}
	})
}
