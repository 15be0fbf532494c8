//go:build sqlite_ncruces

package embedded

import (
	"fmt"

	_ "github.com/ncruces/go-sqlite3/driver"
)

// ncruces/go-sqlite3: SQLite compiled to WebAssembly, run as Go.
const sqliteDriver = "sqlite3"

func sqliteDSN(path string, o sqliteOptions) string {
	dsn := fmt.Sprintf("file:%s?_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=busy_timeout(%d)", path, o.busyTimeout.Milliseconds())
	if o.immediate {
		dsn += "&_txlock=immediate"
	}
	return dsn
}
