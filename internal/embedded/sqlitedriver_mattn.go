//go:build !sqlite_modernc && !sqlite_ncruces

package embedded

import (
	"fmt"

	_ "github.com/mattn/go-sqlite3"
)

// mattn/go-sqlite3: SQLite's C library through cgo.
const sqliteDriver = "sqlite3"

func sqliteDSN(path string, o sqliteOptions) string {
	dsn := fmt.Sprintf("file:%s?_journal_mode=WAL&_synchronous=NORMAL&_busy_timeout=%d", path, o.busyTimeout.Milliseconds())
	if o.immediate {
		dsn += "&_txlock=immediate"
	}
	return dsn
}
