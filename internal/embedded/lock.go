// This file gives a directory to one process at a time: an exclusive
// flock on a file in it, which also records who holds it, so that the
// next process can say who is in the way. The kernel drops the lock when
// its holder exits, however it exits, so a killed process leaves nothing
// to clean up.

package embedded

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Holder is who holds a lock.
type Holder struct {
	PID     int       `json:"pid"`
	Command string    `json:"command"`
	Started time.Time `json:"started"`
}

// InUseError is returned when another process holds the lock.
type InUseError struct {
	Dir string
	// Holder is zero if the holder had not written itself down yet.
	Holder Holder
}

func (e *InUseError) Error() string {
	who := "another process"
	if e.Holder.PID != 0 {
		who = fmt.Sprintf("%s (pid %d, started %s)", e.Holder.Command, e.Holder.PID, e.Holder.Started.Local().Format(time.DateTime))
	}
	return fmt.Sprintf("data directory %s is in use by %s; stop it or use another -data", e.Dir, who)
}

// DirLock is a held lock. Keep it reachable until Release: the garbage
// collector closes a lost file, and with it the lock.
type DirLock struct{ f *os.File }

// LockDir takes the lock file name in dir (creating both if needed) for
// this process, recorded as command, or fails at once with an
// *InUseError. Locks are per open file, so a second LockDir in the same
// process fails too.
func LockDir(dir, name, command string) (*DirLock, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("locking %s: %w", dir, err)
	}
	path := filepath.Join(dir, name)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("locking %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			inUse := &InUseError{Dir: dir}
			if data, err := os.ReadFile(path); err == nil {
				json.Unmarshal(data, &inUse.Holder)
			}
			return nil, inUse
		}
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	me, _ := json.Marshal(Holder{PID: os.Getpid(), Command: command, Started: time.Now()})
	err = f.Truncate(0)
	if err == nil {
		_, err = f.WriteAt(me, 0)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("recording the holder of %s: %w", path, err)
	}
	return &DirLock{f: f}, nil
}

// LockDirWithin is Acquire, retried for up to wait while another process
// holds the lock: for a successor that may start while its predecessor is
// still on its way out.
func LockDirWithin(dir, name, command string, wait time.Duration) (*DirLock, error) {
	deadline := time.Now().Add(wait)
	for {
		l, err := LockDir(dir, name, command)
		var inUse *InUseError
		if !errors.As(err, &inUse) || time.Now().After(deadline) {
			return l, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Release gives the lock up. The file stays: removing it would let a
// process that opened it just before lock a file no one else can find.
func (l *DirLock) Release() error {
	return l.f.Close()
}

// Command describes this process for a Holder: its program's name and
// its subcommand, if any ("surge run").
func Command() string {
	words := []string{filepath.Base(os.Args[0])}
	if len(os.Args) > 1 && !strings.HasPrefix(os.Args[1], "-") {
		words = append(words, os.Args[1])
	}
	return strings.Join(words, " ")
}

// Held reports whether some process holds the lock file name in dir. A
// lock file that does not exist is held by no one.
func Held(dir, name string) (bool, error) {
	f, err := os.Open(filepath.Join(dir, name))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("looking at lock %s: %w", name, err)
	}
	defer f.Close()
	// A shared lock conflicts only with the holder's exclusive one, and
	// closing the file gives it straight back.
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("looking at lock %s: %w", name, err)
	}
	return false, nil
}

// WebTierLock is the lock file a web tier known as id holds in the data
// directory while it runs; several web tiers share one directory, each
// under its own id.
func WebTierLock(id string) string { return "webtier-" + id + ".lock" }

// WebTiers tells which local web tiers are alive by their locks.
type WebTiers struct{ Dir string }

// Alive reports the ids whose web tier holds its lock: the kernel drops
// it when the tier exits, however it exits.
func (w WebTiers) Alive(ctx context.Context, ids []string) (map[string]bool, error) {
	alive := map[string]bool{}
	for _, id := range ids {
		held, err := Held(w.Dir, WebTierLock(id))
		if err != nil {
			return nil, err
		}
		alive[id] = held
	}
	return alive, nil
}
