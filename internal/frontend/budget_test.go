package frontend

import (
	"context"
	"testing"
	"time"
)

func TestSafe(t *testing.T) {
	for _, c := range []struct {
		name   string
		free   int64
		shares []share
		want   bool
	}{
		{"nothing claimed", 0, nil, true},
		{"over the budget", -1, nil, false},
		{"one reader that fits", 10, []share{{held: 5, need: 10}}, true},
		{"one reader that does not fit", 9, []share{{held: 5, need: 10}}, false},
		{"two readers each waiting for the other", 10, []share{{held: 45, need: 20}, {held: 45, need: 20}}, false},
		{"a settled upload gives back enough", 10, []share{{held: 45, need: 0}, {held: 45, need: 20}}, true},
		{"the smallest need unlocks the rest", 10, []share{{held: 30, need: 60}, {held: 40, need: 25}, {held: 20, need: 10}}, true},
		{"one need beyond everything", 10, []share{{held: 30, need: 200}, {held: 20, need: 10}}, false},
		{"readers holding nothing wait their turn", 0, []share{{need: 100}, {need: 50}, {held: 100}}, true},
	} {
		if got := safe(c.free, append([]share(nil), c.shares...)); got != c.want {
			t.Errorf("%s: safe(%d, %v) = %v, want %v", c.name, c.free, c.shares, got, c.want)
		}
	}
}

func granted(t *testing.T, done <-chan error) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("take not granted within 5s")
	}
}

func waiting(t *testing.T, b *budget, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); b.status().waiting != n; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d takes waiting, want %d", b.status().waiting, n)
		}
	}
}

// Two uploads that could each take half the budget and then wait for
// each other for ever: the second waits before it takes anything.
func TestBudgetAvoidsDeadlock(t *testing.T) {
	ctx := context.Background()
	b := newBudget(100)
	first, second := b.claim(80), b.claim(80)
	if err := first.take(ctx, 50); err != nil {
		t.Fatal(err)
	}
	secondTook := make(chan error, 1)
	go func() { secondTook <- second.take(ctx, 40) }()
	waiting(t, b, 1)
	// Had second taken its 40, this would wait for ever.
	bounded, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := first.take(bounded, 30); err != nil {
		t.Fatal(err)
	}
	first.settle()
	// Settled, first needs nothing more, but still holds 80 bytes.
	waiting(t, b, 1)
	first.release()
	granted(t, secondTook)
	if err := second.take(ctx, 40); err != nil {
		t.Fatal(err)
	}
	second.release()
	second.release() // more than once is fine
	if st := b.status(); st.held != 0 || st.peak != 80 || st.waiting != 0 {
		t.Fatalf("budget after both: %+v", st)
	}
}

func TestBudgetTakeEnds(t *testing.T) {
	b := newBudget(100)
	holder, waiter := b.claim(100), b.claim(100)
	if err := holder.take(context.Background(), 100); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	took := make(chan error, 1)
	go func() { took <- waiter.take(ctx, 1) }()
	waiting(t, b, 1)
	cancel()
	select {
	case err := <-took:
		if err == nil {
			t.Fatal("a take whose context ended was granted")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a take whose context ended still waits")
	}
	waiting(t, b, 0)
	if err := holder.take(context.Background(), 1); err == nil {
		t.Fatal("a take over the claim was granted")
	}
	holder.settle()
	if err := waiter.take(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	// A claim is never larger than the budget.
	if c := b.claim(1000); c.max != 100 {
		t.Fatalf("claim of 1000 in a budget of 100: max %d", c.max)
	}
}
