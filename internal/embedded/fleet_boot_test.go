package embedded

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/surgeml/surge/events"
)

func newBootingFleet(t *testing.T, launchDelay time.Duration) (*Fleet, string) {
	t.Helper()
	return newPooledFleet(t, launchDelay, 0, 0)
}

func newPooledFleet(t *testing.T, launchDelay time.Duration, pool int, startDelay time.Duration) (*Fleet, string) {
	t.Helper()
	dir := t.TempDir()
	f, err := NewFleet(FleetConfig{
		PoolSize:    pool,
		StartDelay:  startDelay,
		Dir:         dir,
		LogDir:      filepath.Join(dir, "logs"),
		Command:     []string{os.Args[0], "-test.run=^$"},
		Env:         []string{"PROCFLEET_STANDIN=1", "PROCFLEET_DIR=" + dir},
		StopWait:    2 * time.Second,
		LaunchDelay: launchDelay,
	}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Stop(context.Background()) })
	return f, dir
}

func TestLaunchDelayBootsBeforeTheProcessStarts(t *testing.T) {
	const delay = 300 * time.Millisecond
	f, dir := newBootingFleet(t, delay)
	ctx := context.Background()
	launched := time.Now()
	if err := f.Launch(ctx, []string{"app-tier-instance-1"}); err != nil {
		t.Fatal(err)
	}
	// Booting: listed, pending, but no process yet, here and to readers
	// in other processes.
	for _, l := range []interface {
		List(context.Context) ([]events.Instance, error)
	}{f, NewFleetReader(dir)} {
		in := list(t, l)
		if len(in) != 1 || in[0].State != events.Pending || in[0].ID != "" || in[0].Ready {
			t.Fatalf("%T: a booting instance is listed as %+v, want one pending instance without a process", l, in)
		}
	}
	var started time.Duration
	waitFor(t, "the worker process", func() bool {
		in := list(t, f)
		if len(in) == 1 && in[0].ID != "" && started == 0 {
			started = time.Since(launched)
		}
		return len(in) == 1 && in[0].State == events.Running
	})
	if started < delay {
		t.Errorf("the worker's process started %v after launch, before the %v launch delay", started, delay)
	}
	if in := list(t, NewFleetReader(dir)); len(in) != 1 || in[0].State != events.Running {
		t.Errorf("a reader sees %+v, want the running worker", in)
	}
}

func TestDrainOrKillWhileBootingStartsNothing(t *testing.T) {
	f, dir := newBootingFleet(t, time.Hour)
	ctx := context.Background()
	if err := f.Launch(ctx, []string{"app-tier-instance-1", "app-tier-instance-2"}); err != nil {
		t.Fatal(err)
	}
	if err := f.Drain(ctx, []string{"app-tier-instance-1"}); err != nil {
		t.Fatal(err)
	}
	if err := f.Kill("app-tier-instance-2"); err != nil {
		t.Fatal(err)
	}
	// Again: ending a boot twice is harmless.
	f.Drain(ctx, []string{"app-tier-instance-1"})
	f.Kill("app-tier-instance-2")
	waitFor(t, "both boots to end", func() bool { return len(list(t, f)) == 0 && len(f.Exits()) == 2 })
	exits := f.Exits()
	slices.SortFunc(exits, func(a, b Exit) int { return events.CompareInstanceNames(a.Name, b.Name) })
	want := []Exit{{Name: "app-tier-instance-1", Drained: true}, {Name: "app-tier-instance-2"}}
	if !slices.Equal(exits, want) {
		t.Errorf("exits %+v, want %+v", exits, want)
	}
	if logs, _ := filepath.Glob(filepath.Join(dir, "logs", "*.log")); len(logs) != 0 {
		t.Errorf("instances ended while booting left worker logs %v: a process was started", logs)
	}
	if err := f.Launch(ctx, []string{"app-tier-instance-1"}); err != nil {
		t.Errorf("relaunching a name whose boot was aborted: %v", err)
	}
}

func TestStopDoesNotWaitOutBoots(t *testing.T) {
	f, _ := newBootingFleet(t, time.Hour)
	if err := f.Launch(context.Background(), []string{"app-tier-instance-1"}); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { f.Stop(context.Background()); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Stop waited for an instance's hour-long boot")
	}
	if exits := f.Exits(); len(exits) != 1 || !exits[0].Drained {
		t.Errorf("exits after Stop %+v, want the booting instance, drained", exits)
	}
}

// A pool member starts in StartDelay where a launch boots for LaunchDelay;
// past the pool, launches boot in full; a clean drain stops a worker back
// into the pool, a crash does not.
func TestWarmPoolStartsSooner(t *testing.T) {
	f, _ := newPooledFleet(t, time.Hour, 1, 50*time.Millisecond)
	ctx := context.Background()
	if err := f.Launch(ctx, []string{"app-tier-instance-1", "app-tier-instance-2"}); err != nil {
		t.Fatal(err)
	}
	state := func(name string) events.Instance {
		for _, in := range list(t, f) {
			if in.Name == name {
				return in
			}
		}
		return events.Instance{}
	}
	waitFor(t, "the pool member's worker", func() bool { return state("app-tier-instance-1").State == events.Running })
	if in := state("app-tier-instance-2"); in.State != events.Pending || in.ID != "" {
		t.Fatalf("past the pool, an instance is %+v, want one still booting", in)
	}
	if err := f.Drain(ctx, []string{"app-tier-instance-1", "app-tier-instance-2"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the fleet to empty", func() bool { return len(list(t, f)) == 0 })
	// The drained worker went back to the pool; the launch that never ran
	// had not come from it, so there is one fast start again.
	if err := f.Launch(ctx, []string{"app-tier-instance-3", "app-tier-instance-4"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a start from the pool", func() bool {
		return state("app-tier-instance-3").State == events.Running
	})
	if in := state("app-tier-instance-4"); in.State != events.Pending || in.ID != "" {
		t.Errorf("the pool held more than its size: %+v", in)
	}
	if err := f.Kill("app-tier-instance-3"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the crash", func() bool { return state("app-tier-instance-3").Name == "" })
	if err := f.Launch(ctx, []string{"app-tier-instance-5"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if in := state("app-tier-instance-5"); in.State != events.Pending || in.ID != "" {
		t.Errorf("a crashed worker went back to the pool: the next launch is %+v", in)
	}
}
