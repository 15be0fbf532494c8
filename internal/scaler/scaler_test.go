package scaler

import (
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/surgeml/surge/internal/fleet"
	"github.com/surgeml/surge/internal/queue"
)

func inst(n int, state fleet.State, idle bool) fleet.Instance {
	return fleet.Instance{Name: fleet.Name(fleet.DefaultPrefix, n), State: state, Idle: idle}
}

func names(ns ...int) []string {
	var out []string
	for _, n := range ns {
		out = append(out, fleet.Name(fleet.DefaultPrefix, n))
	}
	return out
}

func span(from, to int) []int {
	var out []int
	for n := from; n <= to; n++ {
		out = append(out, n)
	}
	return out
}

func TestPlan(t *testing.T) {
	cfg := Config{Max: 19, Prefix: fleet.DefaultPrefix}
	run := func(n int) fleet.Instance { return inst(n, fleet.Running, true) }
	busy := func(n int) fleet.Instance { return inst(n, fleet.Running, false) }
	for _, c := range []struct {
		name      string
		cfg       Config
		backlog   int
		floor     int
		fleet     []fleet.Instance
		launch    []string
		terminate []string
	}{
		{name: "idle and empty", backlog: 0},
		{name: "first request", backlog: 1, launch: names(1)},
		{name: "nine fit one worker", backlog: 9, fleet: []fleet.Instance{busy(1)}},
		{name: "tenth needs a second", backlog: 10, fleet: []fleet.Instance{busy(1)}, launch: names(2)},
		{name: "burst from zero stops at the cap", backlog: 100, launch: names(span(1, 19)...)},
		{name: "burst fills gaps first", backlog: 20, fleet: []fleet.Instance{busy(1), busy(3)}, launch: names(2, 4)},
		{name: "pending counts as capacity", backlog: 10, fleet: []fleet.Instance{inst(1, fleet.Pending, false), inst(2, fleet.Pending, false)}},
		{name: "draining counts toward the cap", backlog: 1000,
			fleet:  append([]fleet.Instance{inst(1, fleet.Draining, true), inst(2, fleet.Draining, true)}, fleetOf(busy, 3, 18)...),
			launch: names(19)},
		{name: "draining names are not reused", backlog: 10, fleet: []fleet.Instance{inst(1, fleet.Draining, true)}, launch: names(2, 3)},
		{name: "all idle at zero backlog leave", backlog: 0, fleet: []fleet.Instance{run(1), run(2), run(3)}, terminate: names(3, 2, 1)},
		{name: "busy workers are never drained", backlog: 0, fleet: []fleet.Instance{run(1), busy(2), run(3)}, terminate: names(3, 1)},
		{name: "pending workers are not drained", backlog: 0, fleet: []fleet.Instance{inst(1, fleet.Pending, false)}},
		{name: "the floor holds workers back", backlog: 0, floor: 2, fleet: []fleet.Instance{run(1), run(2), run(3)}, terminate: names(3)},
		{name: "shrinking backlog drains the highest", backlog: 12, fleet: fleetOf(run, 1, 5), terminate: names(5, 4, 3)},
		{name: "a lowered cap drains down to it", cfg: Config{Max: 2, Prefix: fleet.DefaultPrefix}, backlog: 100, fleet: fleetOf(run, 1, 4), terminate: names(4, 3)},
		{name: "foreign names are ignored for numbering", backlog: 10, fleet: []fleet.Instance{{Name: "web-instance", State: fleet.Running}}, launch: names(1)},
	} {
		t.Run(c.name, func(t *testing.T) {
			cc := cfg
			if c.cfg.Max != 0 {
				cc = c.cfg
			}
			d := Plan(cc, c.backlog, c.floor, c.fleet)
			if !slices.Equal(d.Launched, c.launch) || !slices.Equal(d.Terminated, c.terminate) {
				t.Errorf("launched %v, terminated %v; want %v, %v", d.Launched, d.Terminated, c.launch, c.terminate)
			}
			if total := len(c.fleet) + len(d.Launched); total > cc.Max && len(d.Launched) > 0 {
				t.Errorf("fleet would grow to %d, cap %d", total, cc.Max)
			}
		})
	}
}

func fleetOf(make func(int) fleet.Instance, from, to int) []fleet.Instance {
	var out []fleet.Instance
	for n := from; n <= to; n++ {
		out = append(out, make(n))
	}
	return out
}

// The cap holds for every backlog and starting fleet.
func TestPlanNeverExceedsCap(t *testing.T) {
	for max := 1; max <= 20; max++ {
		cfg := Config{Max: max, Prefix: fleet.DefaultPrefix}
		for have := 0; have <= max; have++ {
			for draining := 0; draining <= have; draining++ {
				var in []fleet.Instance
				for n := 1; n <= have; n++ {
					state := fleet.Running
					if n <= draining {
						state = fleet.Draining
					}
					in = append(in, inst(n, state, true))
				}
				for _, backlog := range []int{0, 1, 9, 10, 50, 95, 96, 1000} {
					d := Plan(cfg, backlog, 0, in)
					if len(in)+len(d.Launched) > max {
						t.Fatalf("max %d, %d instances (%d draining), backlog %d: launches %v", max, have, draining, backlog, d.Launched)
					}
				}
			}
		}
	}
}

type fakeQueue struct{ backlog int }

func (q *fakeQueue) Counts(context.Context) (queue.Counts, error) {
	return queue.Counts{Visible: q.backlog}, nil
}

// fakeFleet is a named fake: it records calls and applies them instantly,
// standing in for the process and EC2 fleets, which have their own tests.
type fakeFleet struct{ instances []fleet.Instance }

func (f *fakeFleet) List(context.Context) ([]fleet.Instance, error) {
	return slices.Clone(f.instances), nil
}

func (f *fakeFleet) Launch(_ context.Context, names []string) error {
	for _, n := range names {
		f.instances = append(f.instances, fleet.Instance{Name: n, State: fleet.Running, Idle: true})
	}
	return nil
}

func (f *fakeFleet) Drain(_ context.Context, names []string) error {
	f.instances = slices.DeleteFunc(f.instances, func(in fleet.Instance) bool { return slices.Contains(names, in.Name) })
	return nil
}

// Scale-in waits for the delay; scale-out does not.
func TestScaleInDelay(t *testing.T) {
	q, f := &fakeQueue{}, &fakeFleet{}
	s := New(Config{Max: 19, ScaleInDelay: 2 * time.Second}, q, f, slog.New(slog.DiscardHandler))
	now := time.Unix(0, 0)
	s.now = func() time.Time { return now }
	step := func(backlog int, advance time.Duration, want int) {
		t.Helper()
		q.backlog = backlog
		now = now.Add(advance)
		if _, err := s.Reconcile(context.Background()); err != nil {
			t.Fatal(err)
		}
		if len(f.instances) != want {
			t.Fatalf("at %v with backlog %d: %d instances, want %d", now.Sub(time.Unix(0, 0)), backlog, len(f.instances), want)
		}
	}
	step(100, 0, 19)
	step(10, time.Second, 19) // within the delay
	step(10, 1500*time.Millisecond, 2)
	step(0, 500*time.Millisecond, 2)
	step(0, time.Second, 2)
	step(0, 1100*time.Millisecond, 0)
	step(30, 0, 6)
}
