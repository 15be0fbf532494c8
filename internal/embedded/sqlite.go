package embedded

import (
	"database/sql"
	"fmt"
	"time"
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

// openSQLite opens the SQLite database file at path in WAL mode with
// NORMAL sync (a killed process loses nothing; a power cut may lose the
// last transactions), through the driver this build links (sqlitedriver_*.go).
func openSQLite(path string, o sqliteOptions) (*sql.DB, error) {
	db, err := sql.Open(sqliteDriver, sqliteDSN(path, o))
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	return db, nil
}
