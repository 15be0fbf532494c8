// This file keeps the results table in an SQLite database file,
// for the embedded system: the web tier and every worker process open the
// same file.

package embedded

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/surgeml/surge/events"
)

// Table is one results table.
type Table struct {
	db   *sql.DB
	path string
}

var _ events.Table = (*Table)(nil)

// busyTimeout bounds how long a call waits for another process's write.
// It is short: a table that stays locked longer is treated as down, and
// answers go through the queue instead.
const busyTimeout = time.Second

// OpenTable opens (creating if need be) the table in dir/<name>.db.
func OpenTable(ctx context.Context, dir, name string) (*Table, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("results table %s: %w", name, err)
	}
	path := filepath.Join(dir, name+".db")
	db, err := openSQLite(path, sqliteOptions{busyTimeout: busyTimeout})
	if err != nil {
		return nil, fmt.Errorf("results table %s: %w", path, err)
	}
	_, err = db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS results (
		name   TEXT PRIMARY KEY,
		stem   TEXT NOT NULL,
		label  TEXT NOT NULL,
		score  REAL NOT NULL,
		model  TEXT NOT NULL,
		sha256 TEXT NOT NULL,
		time   TEXT NOT NULL
	)`)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("results table %s: creating: %w", path, err)
	}
	return &Table{db: db, path: path}, nil
}

// Path is the database file.
func (t *Table) Path() string { return t.path }

// Close closes the database.
func (t *Table) Close() error { return t.db.Close() }

// Get returns the item for name.
func (t *Table) Get(ctx context.Context, name string) (events.Item, error) {
	it := events.Item{Name: name}
	var at string
	err := t.db.QueryRowContext(ctx, `SELECT stem, label, score, model, sha256, time FROM results WHERE name = ?`, name).
		Scan(&it.Stem, &it.Label, &it.Score, &it.Model, &it.SHA256, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return it, fmt.Errorf("results table: %q: %w", name, events.ErrNoItem)
	}
	if err != nil {
		return it, fmt.Errorf("results table: reading %q: %w", name, err)
	}
	if it.Time, err = time.Parse(time.RFC3339Nano, at); err != nil {
		return it, fmt.Errorf("results table: %q has time %q: %w", name, at, err)
	}
	return it, nil
}

// Put records it, replacing any item with its name.
func (t *Table) Put(ctx context.Context, it events.Item) error {
	_, err := t.db.ExecContext(ctx, `INSERT OR REPLACE INTO results (name, stem, label, score, model, sha256, time) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		it.Name, it.Stem, it.Label, it.Score, it.Model, it.SHA256, it.Time.UTC().Format(time.RFC3339Nano))
	if err != nil {
		return fmt.Errorf("results table: recording %q: %w", it.Name, err)
	}
	return nil
}

// Mark implements events.Table: an upsert that leaves an answer for the
// same bytes alone.
func (t *Table) Mark(ctx context.Context, it events.Item) error {
	_, err := t.db.ExecContext(ctx, `INSERT INTO results (name, stem, label, score, model, sha256, time) VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET stem = excluded.stem, label = excluded.label, score = excluded.score,
			model = excluded.model, sha256 = excluded.sha256, time = excluded.time
		WHERE NOT (results.sha256 = excluded.sha256 AND results.label != '')`,
		it.Name, it.Stem, it.Label, it.Score, it.Model, it.SHA256, it.Time.UTC().Format(time.RFC3339Nano))
	if err != nil {
		return fmt.Errorf("results table: marking %q: %w", it.Name, err)
	}
	return nil
}

// Len counts the items. Only the embedded system can afford it; the
// tiers on AWS may not scan their table.
func (t *Table) Len(ctx context.Context) (int, error) {
	var n int
	if err := t.db.QueryRowContext(ctx, `SELECT count(*) FROM results`).Scan(&n); err != nil {
		return 0, fmt.Errorf("results table: counting: %w", err)
	}
	return n, nil
}
