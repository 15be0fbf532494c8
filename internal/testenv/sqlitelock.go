package testenv

import (
	"bufio"
	"os/exec"
	"strings"
	"testing"
)

// LockSQLite holds a write transaction on the SQLite database at path
// until the test ends, from another process (Python's sqlite3 module), as
// a sqlite3 shell in a transaction or a backup tool would: readers go on,
// writers wait for the lock and give up. Another process, not another
// connection of this one: SQLite's locks are POSIX locks, which a process
// holds as a whole, and the driver under test need not be the helper's.
func LockSQLite(t testing.TB, path string) {
	t.Helper()
	cmd := exec.Command("python3", "-c", `
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.read()
db.execute("ROLLBACK")
`, path)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("locking %s: %v", path, err)
	}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Wait()
	})
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "locked\n" {
		t.Fatalf("locking %s: %q, %v: %s", path, line, err, stderr.String())
	}
}
