package embedded_test

import (
	"context"
	"testing"
	"time"

	"github.com/surgeml/surge/events"
	"github.com/surgeml/surge/internal/embedded"
	"github.com/surgeml/surge/internal/testenv"
)

func openTable(t *testing.T, dir string) *embedded.Table {
	t.Helper()
	tab, err := embedded.OpenTable(context.Background(), dir, "x-dynamoDB")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tab.Close() })
	return tab
}

func TestTableContract(t *testing.T) {
	testenv.TableContract(t, func(t *testing.T) events.Table { return openTable(t, t.TempDir()) })
}

// Two processes' handles on one file see each other's items, as the web
// tier sees the workers'.
func TestSharedFile(t *testing.T) {
	dir := t.TempDir()
	a, b := openTable(t, dir), openTable(t, dir)
	it := events.Item{Name: "test_00.jpg", Stem: "test_00", Label: "Paul", Model: "m", SHA256: "x", Time: time.Now()}
	if err := a.Put(context.Background(), it); err != nil {
		t.Fatal(err)
	}
	if got, err := b.Get(context.Background(), it.Name); err != nil || got.Label != "Paul" {
		t.Fatalf("other handle reads %+v, %v", got, err)
	}
	if n, err := b.Len(context.Background()); err != nil || n != 1 {
		t.Fatalf("Len = %d, %v", n, err)
	}
}

// A database another process holds a write lock on (say, sqlite3 in a
// transaction) refuses writes within the busy timeout, not after a hang,
// and still serves reads.
func TestLockedRefusesWritesPromptly(t *testing.T) {
	dir := t.TempDir()
	tab := openTable(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	it := events.Item{Name: "a.jpg", Stem: "a", Label: "A", Model: "m", SHA256: "x", Time: time.Now()}
	if err := tab.Put(ctx, it); err != nil {
		t.Fatal(err)
	}
	testenv.LockSQLite(t, tab.Path())
	it.Name = "c.jpg"
	if err := tab.Put(ctx, it); err == nil || ctx.Err() != nil {
		t.Fatalf("Put on a locked database: %v (ctx %v); want a prompt error", err, ctx.Err())
	} else {
		t.Logf("locked: %v", err)
	}
	if got, err := tab.Get(ctx, "a.jpg"); err != nil || got.Label != "A" {
		t.Fatalf("Get while locked = %+v, %v", got, err)
	}
}
