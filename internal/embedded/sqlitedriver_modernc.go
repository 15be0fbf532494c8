//go:build sqlite_modernc

package embedded

import (
	"fmt"

	_ "modernc.org/sqlite"
)

// modernc.org/sqlite: SQLite's C translated to Go.
const sqliteDriver = "sqlite"

func sqliteDSN(path string, o sqliteOptions) string {
	dsn := fmt.Sprintf("file:%s?_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=busy_timeout(%d)", path, o.busyTimeout.Milliseconds())
	if o.immediate {
		dsn += "&_txlock=immediate"
	}
	return dsn
}
