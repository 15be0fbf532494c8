package embedded

import (
	"database/sql"
	"errors"
	"fmt"
	"time"

	_ "github.com/mattn/go-sqlite3"
)

// sqliteOptions are the connection settings the embedded stores open
// their files with.
type sqliteOptions struct {
	busyTimeout time.Duration
	// immediate begins every transaction with BEGIN IMMEDIATE: the write
	// lock up front, so a busy writer waits instead of failing at its
	// first write.
	immediate bool
}

// errNoCgo explains a build without cgo. SQLite is C through cgo here
// because the pure-Go drivers cost 7–8 % of the pipeline's throughput
// (docs/running.md); the deployed binaries, built without cgo, never open
// an embedded store.
var errNoCgo = errors.New("the embedded backends need SQLite through cgo, and this binary was built without it (no C compiler when it was built): install gcc and rebuild (make build)")

// openSQLite opens the SQLite database file at path in WAL mode with
// NORMAL sync: a killed process loses nothing; a power cut may lose the
// last transactions.
func openSQLite(path string, o sqliteOptions) (*sql.DB, error) {
	if !cgoEnabled {
		return nil, errNoCgo
	}
	dsn := fmt.Sprintf("file:%s?_journal_mode=WAL&_synchronous=NORMAL&_busy_timeout=%d", path, o.busyTimeout.Milliseconds())
	if o.immediate {
		dsn += "&_txlock=immediate"
	}
	db, err := sql.Open("sqlite3", dsn)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	return db, nil
}
