package testenv

import (
	"context"
	"database/sql"
	"testing"

	_ "github.com/mattn/go-sqlite3"
)

// LockSQLite holds a write transaction on the SQLite database at path
// until the test ends, as another process (sqlite3 in a transaction, a
// backup tool) would: readers go on, writers wait for the lock and give up.
func LockSQLite(t testing.TB, path string) {
	t.Helper()
	ctx := context.Background()
	db, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, `BEGIN IMMEDIATE`); err != nil {
		t.Fatalf("locking %s: %v", path, err)
	}
	t.Cleanup(func() {
		conn.ExecContext(ctx, `ROLLBACK`)
		conn.Close()
		db.Close()
	})
}
