package embedded_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/surgeml/surge/internal/embedded"
)

// lockChild is the child side of TestHolderInAnotherProcess: take the
// lock, say so, and wait to be killed.
func lockChild(dir string) {
	l, err := embedded.LockDir(dir, "x.lock", "holder-child")
	if err != nil {
		os.Stderr.WriteString(err.Error())
		os.Exit(2)
	}
	os.WriteFile(filepath.Join(dir, "held"), nil, 0o600)
	time.Sleep(time.Minute)
	l.Release()
	os.Exit(0)
}

func TestSecondAcquireFailsNamingTheHolder(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	l, err := embedded.LockDir(dir, "x.lock", "surge run")
	if err != nil {
		t.Fatal(err)
	}
	_, err = embedded.LockDir(dir, "x.lock", "surge run")
	var inUse *embedded.InUseError
	if !errors.As(err, &inUse) || inUse.Holder.PID != os.Getpid() || inUse.Holder.Command != "surge run" ||
		time.Since(inUse.Holder.Started) > time.Minute {
		t.Fatalf("second acquire: %v (%+v)", err, inUse)
	}
	want := "data directory " + dir + " is in use by surge run (pid "
	if !strings.HasPrefix(err.Error(), want) || !strings.HasSuffix(err.Error(), "; stop it or use another -data") {
		t.Fatalf("message %q, want it to start %q", err, want)
	}
	// Another lock file in the same directory is another lock.
	other, err := embedded.LockDir(dir, "y.lock", "webtier")
	if err != nil {
		t.Fatal(err)
	}
	other.Release()
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	again, err := embedded.LockDir(dir, "x.lock", "surge run")
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	again.Release()
}

// A holder killed with SIGKILL leaves the directory free.
func TestHolderInAnotherProcess(t *testing.T) {
	dir := t.TempDir()
	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), "DIRLOCK_CHILD_DIR="+dir)
	child.Stderr = os.Stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { child.Process.Kill(); child.Wait() })
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(filepath.Join(dir, "held")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the child never took the lock")
		}
	}
	_, err := embedded.LockDir(dir, "x.lock", "me")
	var inUse *embedded.InUseError
	if !errors.As(err, &inUse) || inUse.Holder.PID != child.Process.Pid || inUse.Holder.Command != "holder-child" {
		t.Fatalf("acquire while the child holds it: %v", err)
	}
	start := time.Now()
	if _, err := embedded.LockDirWithin(dir, "x.lock", "me", 300*time.Millisecond); !errors.As(err, &inUse) || time.Since(start) < 300*time.Millisecond {
		t.Fatalf("acquire within 300ms while the child holds it: %v after %v", err, time.Since(start))
	}
	go func() {
		time.Sleep(200 * time.Millisecond)
		child.Process.Kill()
	}()
	l, err := embedded.LockDirWithin(dir, "x.lock", "me", 10*time.Second)
	if err != nil {
		t.Fatalf("acquire while the holder is killed: %v", err)
	}
	l.Release()
}
