package embedded

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/surgeml/surge/events"
)

func newFleet(t *testing.T, env ...string) (*Fleet, string) {
	t.Helper()
	dir := t.TempDir()
	f, err := NewFleet(FleetConfig{
		Dir:      dir,
		LogDir:   filepath.Join(dir, "logs"),
		Command:  []string{os.Args[0], "-test.run=^$"},
		Env:      append([]string{"PROCFLEET_STANDIN=1", "PROCFLEET_DIR=" + dir}, env...),
		StopWait: 2 * time.Second,
	}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Stop(context.Background()) })
	return f, dir
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func list(t *testing.T, l interface {
	List(context.Context) ([]events.Instance, error)
}) []events.Instance {
	t.Helper()
	in, err := l.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return in
}

func names(in []events.Instance) []string {
	var out []string
	for _, i := range in {
		out = append(out, i.Name)
	}
	return out
}

func TestLaunchListDrain(t *testing.T) {
	f, dir := newFleet(t)
	ctx := context.Background()
	want := []string{"app-tier-instance-1", "app-tier-instance-2", "app-tier-instance-10"}
	if err := f.Launch(ctx, want); err != nil {
		t.Fatal(err)
	}
	if err := f.Launch(ctx, want[:1]); err == nil {
		t.Fatal("launching a running name twice was accepted")
	}
	waitFor(t, "all running and idle", func() bool {
		in := list(t, f)
		return len(in) == 3 && !slices.ContainsFunc(in, func(i events.Instance) bool { return i.State != events.Running || !i.Idle })
	})
	if got := names(list(t, f)); !slices.Equal(got, want) {
		t.Fatalf("List order %v, want %v", got, want)
	}
	for _, in := range list(t, f) {
		if !in.Ready || in.Launched.IsZero() || time.Since(in.Launched) > time.Minute {
			t.Fatalf("a running worker's readiness or launch time: %+v", in)
		}
	}
	// Other processes see the fleet, and its state, through the snapshot.
	reader := NewFleetReader(dir)
	if got := list(t, reader); !slices.Equal(names(got), want) || got[0].State != events.Running || !got[0].Idle || !got[0].Ready || got[0].Launched.IsZero() {
		t.Fatalf("Reader sees %+v", got)
	}

	// A worker holding a message is not idle, and finishes it when drained.
	hold := filepath.Join(dir, "app-tier-instance-2.hold")
	os.WriteFile(hold, nil, 0o600)
	waitFor(t, "instance 2 busy", func() bool { return !list(t, f)[1].Idle })
	if err := f.Drain(ctx, []string{"app-tier-instance-2"}); err != nil {
		t.Fatal(err)
	}
	if st := list(t, f)[1].State; st != events.Draining {
		t.Fatalf("drained instance is %s", st)
	}
	time.Sleep(300 * time.Millisecond)
	if len(list(t, f)) != 3 {
		t.Fatal("a draining worker left while still holding a message")
	}
	os.Remove(hold)
	waitFor(t, "instance 2 gone", func() bool { return len(list(t, f)) == 2 })
	exits := f.Exits()
	if len(exits) != 1 || exits[0].Name != "app-tier-instance-2" || !exits[0].Drained || exits[0].ExitCode != 0 || exits[0].PeakRSS <= 0 {
		t.Fatalf("exits %+v", exits)
	}
	if got := names(list(t, reader)); len(got) != 2 {
		t.Fatalf("Reader still sees %v", got)
	}
}

// A worker is not ready until it says so, however long it has run.
func TestNotReadyUntilReported(t *testing.T) {
	f, _ := newFleet(t, "PROCFLEET_NEVER_READY=1")
	before := time.Now()
	if err := f.Launch(context.Background(), []string{"app-tier-instance-1"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // long enough for a stand-in to report
	in := list(t, f)
	if len(in) != 1 || in[0].Ready || in[0].State != events.Pending || in[0].Launched.Before(before) || in[0].Launched.After(time.Now()) {
		t.Fatalf("a worker that never reported: %+v", in)
	}
}

func TestKillIsNotADrain(t *testing.T) {
	f, _ := newFleet(t)
	ctx := context.Background()
	f.Launch(ctx, []string{"app-tier-instance-1"})
	waitFor(t, "running", func() bool { in := list(t, f); return len(in) == 1 && in[0].State == events.Running })
	if err := f.Kill("app-tier-instance-1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "gone", func() bool { return len(list(t, f)) == 0 })
	if e := f.Exits(); len(e) != 1 || e[0].Drained || e[0].ExitCode == 0 {
		t.Fatalf("exits %+v", e)
	}
	// The name is free again.
	if err := f.Launch(ctx, []string{"app-tier-instance-1"}); err != nil {
		t.Fatal(err)
	}
}

func TestStopKillsStragglers(t *testing.T) {
	f, _ := newFleet(t, "PROCFLEET_IGNORE_TERM=1")
	f.Launch(context.Background(), []string{"app-tier-instance-1"})
	waitFor(t, "running", func() bool { in := list(t, f); return len(in) == 1 && in[0].State == events.Running })
	start := time.Now()
	f.Stop(context.Background())
	if took := time.Since(start); took < 2*time.Second || took > 10*time.Second {
		t.Fatalf("Stop took %v with a 2s StopWait", took)
	}
	if len(list(t, f)) != 0 {
		t.Fatal("a worker survived Stop")
	}
}

// A snapshot left behind by a dead supervisor shows no dead workers.
func TestReaderIgnoresDeadProcesses(t *testing.T) {
	dir := t.TempDir()
	snap, _ := json.Marshal(snapshot{Instances: []events.Instance{
		{Name: "app-tier-instance-1", ID: "999999999", State: events.Running},
		{Name: "app-tier-instance-2", ID: "1", State: events.Running}, // init is alive
	}})
	os.WriteFile(filepath.Join(dir, snapshotFile), snap, 0o600)
	if got := names(list(t, NewFleetReader(dir))); !slices.Equal(got, []string{"app-tier-instance-2"}) {
		t.Fatalf("Reader sees %v", got)
	}
	if got := list(t, NewFleetReader(t.TempDir())); len(got) != 0 {
		t.Fatalf("no snapshot: %v", got)
	}
}

func TestReporterDebouncesIdle(t *testing.T) {
	path := filepath.Join(t.TempDir(), "w.status")
	r := NewReporter(path)
	r.Ready()
	r.Held(1)
	if st, err := readStatus(path); err != nil || st.Held != 1 || !st.Ready {
		t.Fatalf("busy not reported at once: %+v, %v", st, err)
	}
	r.Held(0)
	r.Held(1) // back to work before idleAfter: never reported idle
	time.Sleep(2 * idleAfter)
	if st, _ := readStatus(path); st.Held != 1 {
		t.Fatalf("a momentary gap was reported as idle: %+v", st)
	}
	r.Held(0)
	time.Sleep(2 * idleAfter)
	if st, _ := readStatus(path); st.Held != 0 {
		t.Fatalf("idle not reported: %+v", st)
	}
	NewReporter("").Held(3) // no file, no trouble
}
