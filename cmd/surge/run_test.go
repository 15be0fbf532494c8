package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/surgeml/surge/internal/testenv"
)

// surge run with a model process that misbehaves at its start fails at
// once saying why, and with one that is slow to start stops on one
// Ctrl-C (issue 23, defect 2: a ready line over 64 KiB hung it, through
// its start timeout, two Ctrl-Cs and SIGTERM).
func TestRunWithAModelThatWillNotStart(t *testing.T) {
	testenv.SkipShort(t, "surge run")
	bin := testenv.BuildBinaries(t, "./cmd/surge", "./webtier", "./worker")
	model := strings.Join(testenv.SizesModel(t), " ")
	run := func(env ...string) (*exec.Cmd, *testenv.Buffer) {
		cmd := exec.Command(filepath.Join(bin, "surge"), "run", "-port", "0", "-host", "127.0.0.1",
			"-data", t.TempDir(), "-model-command", model, "-model-start-timeout", "20s")
		var out testenv.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		cmd.Env = append(cmd.Environ(), env...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd, &out
	}
	wait := func(cmd *exec.Cmd, within time.Duration) error {
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			return err
		case <-time.After(within):
			cmd.Process.Kill()
			<-done
			t.Fatalf("surge run still running after %v", within)
			return nil
		}
	}

	start := time.Now()
	cmd, out := run("SIZES_LONG=ready")
	if err := wait(cmd, 10*time.Second); err == nil || !strings.Contains(out.String(), "over 64 KiB") {
		t.Errorf("a ready line over 64 KiB: %v after %v, want a failure saying so:\n%s", err, time.Since(start), out)
	}

	cmd, out = run("SIZES_START_DELAY=60")
	time.Sleep(time.Second)
	start = time.Now()
	cmd.Process.Signal(syscall.SIGINT)
	wait(cmd, 5*time.Second)
	t.Logf("slow model: stopped %v after one Ctrl-C", time.Since(start).Round(time.Millisecond))
	if strings.Contains(out.String(), "panic") {
		t.Errorf("surge run panicked:\n%s", out)
	}
}
