package embedded

import (
	"database/sql"
	"time"
)

// OpenSQLite opens a database file through the driver the package uses,
// for tests that look inside one.
func OpenSQLite(path string) (*sql.DB, error) {
	return openSQLite(path, sqliteOptions{busyTimeout: time.Second})
}
