package scaler

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"github.com/surgeml/surge/events"
	"log/slog"
	"slices"
	"testing"
	"time"
)

func inst(n int, state events.State, idle bool) events.Instance {
	return events.Instance{Name: events.InstanceName(events.DefaultPrefix, n), State: state, Idle: idle, Ready: state != events.Pending}
}

// t0 is the time plans are made at in the tables.
var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// booting is an instance launched age before t0 that is not ready yet.
func booting(n int, state events.State, age time.Duration) events.Instance {
	return events.Instance{Name: events.InstanceName(events.DefaultPrefix, n), State: state, Launched: t0.Add(-age)}
}

func names(ns ...int) []string {
	var out []string
	for _, n := range ns {
		out = append(out, events.InstanceName(events.DefaultPrefix, n))
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
	cfg := Config{Max: 19, Prefix: events.DefaultPrefix}
	deadline := Config{Max: 19, Prefix: events.DefaultPrefix, BootDeadline: 5 * time.Minute}
	warm := Config{Max: 19, Min: 2, Prefix: events.DefaultPrefix}
	run := func(n int) events.Instance { return inst(n, events.Running, true) }
	busy := func(n int) events.Instance { return inst(n, events.Running, false) }
	for _, c := range []struct {
		name      string
		cfg       Config
		backlog   int
		floor     int
		fleet     []events.Instance
		launch    []string
		terminate []string
		replace   []string
	}{
		{name: "idle and empty", backlog: 0},
		{name: "first request", backlog: 1, launch: names(1)},
		{name: "nine fit one worker", backlog: 9, fleet: []events.Instance{busy(1)}},
		{name: "tenth needs a second", backlog: 10, fleet: []events.Instance{busy(1)}, launch: names(2)},
		{name: "burst from zero stops at the cap", backlog: 100, launch: names(span(1, 19)...)},
		{name: "burst fills gaps first", backlog: 20, fleet: []events.Instance{busy(1), busy(3)}, launch: names(2, 4)},
		{name: "pending counts as capacity", backlog: 10, fleet: []events.Instance{inst(1, events.Pending, false), inst(2, events.Pending, false)}},
		{name: "draining counts toward the cap", backlog: 1000,
			fleet:  append([]events.Instance{inst(1, events.Draining, true), inst(2, events.Draining, true)}, fleetOf(busy, 3, 18)...),
			launch: names(19)},
		{name: "draining names are not reused", backlog: 10, fleet: []events.Instance{inst(1, events.Draining, true)}, launch: names(2, 3)},
		{name: "all idle at zero backlog leave", backlog: 0, fleet: []events.Instance{run(1), run(2), run(3)}, terminate: names(3, 2, 1)},
		{name: "busy workers are never drained", backlog: 0, fleet: []events.Instance{run(1), busy(2), run(3)}, terminate: names(3, 1)},
		{name: "pending workers are not drained", backlog: 0, fleet: []events.Instance{inst(1, events.Pending, false)}},
		{name: "the floor holds workers back", backlog: 0, floor: 2, fleet: []events.Instance{run(1), run(2), run(3)}, terminate: names(3)},
		{name: "minWorkers launches with no backlog", cfg: warm, backlog: 0, launch: names(1, 2)},
		{name: "minWorkers tops up the fleet", cfg: warm, backlog: 0, fleet: []events.Instance{run(1)}, launch: names(2)},
		{name: "minWorkers keeps idle workers", cfg: warm, backlog: 0, fleet: fleetOf(run, 1, 4), terminate: names(4, 3)},
		{name: "minWorkers below the backlog's need changes nothing", cfg: warm, backlog: 20, fleet: []events.Instance{busy(1)}, launch: names(2, 3, 4)},
		{name: "shrinking backlog drains the highest", backlog: 12, fleet: fleetOf(run, 1, 5), terminate: names(5, 4, 3)},
		{name: "a lowered cap drains down to it", cfg: Config{Max: 2, Prefix: events.DefaultPrefix}, backlog: 100, fleet: fleetOf(run, 1, 4), terminate: names(4, 3)},
		{name: "foreign names are ignored for numbering", backlog: 10, fleet: []events.Instance{{Name: "web-instance", State: events.Running}}, launch: names(1)},

		// The boot deadline.
		{name: "booting within the deadline counts as capacity", cfg: deadline, backlog: 10,
			fleet: []events.Instance{busy(1), booting(2, events.Running, 4*time.Minute)}},
		{name: "exactly at the deadline is not yet overdue", cfg: deadline, backlog: 10,
			fleet: []events.Instance{busy(1), booting(2, events.Running, 5*time.Minute)}},
		{name: "past the deadline is replaced under a free name", cfg: deadline, backlog: 10,
			fleet:  []events.Instance{busy(1), booting(2, events.Running, 5*time.Minute+time.Second)},
			launch: names(3), replace: names(2)},
		{name: "pending past the deadline is replaced", cfg: deadline, backlog: 1,
			fleet:  []events.Instance{booting(1, events.Pending, time.Hour)},
			launch: names(2), replace: names(1)},
		{name: "replaced even when not idle: it never took work", cfg: deadline, backlog: 0,
			fleet:   []events.Instance{func() events.Instance { in := booting(1, events.Running, time.Hour); in.Idle = false; return in }()},
			replace: names(1)},
		{name: "every overdue instance is replaced", cfg: deadline, backlog: 30,
			fleet:  []events.Instance{booting(1, events.Running, time.Hour), booting(2, events.Pending, time.Hour), busy(3)},
			launch: names(4, 5, 6, 7, 8), replace: names(1, 2)},
		{name: "a ready instance is never replaced", cfg: deadline, backlog: 10,
			fleet: []events.Instance{func() events.Instance { in := booting(1, events.Running, time.Hour); in.Ready = true; return in }()}, launch: names(2)},
		{name: "no deadline, no replacement", backlog: 1, fleet: []events.Instance{booting(1, events.Running, 24*time.Hour)}},
		{name: "unknown launch time is given forever", cfg: deadline, backlog: 1,
			fleet: []events.Instance{{Name: events.InstanceName(events.DefaultPrefix, 1), State: events.Running}}},
		{name: "a draining instance is not replaced again", cfg: deadline, backlog: 1,
			fleet: []events.Instance{booting(1, events.Draining, time.Hour)}, launch: names(2)},
		{name: "the replacement waits for room under the cap", cfg: Config{Max: 2, Prefix: events.DefaultPrefix, BootDeadline: time.Minute}, backlog: 100,
			fleet: []events.Instance{busy(1), booting(2, events.Running, time.Hour)}, replace: names(2)},
		{name: "a replaced instance is not also drained for scale-in", cfg: deadline, backlog: 0,
			fleet: []events.Instance{run(1), booting(2, events.Running, time.Hour)}, terminate: names(1), replace: names(2)},
		{name: "scale-in keeps ready workers over a replaced one", cfg: deadline, backlog: 10,
			fleet: []events.Instance{run(1), run(2), booting(3, events.Running, time.Hour)}, replace: names(3)},
	} {
		t.Run(c.name, func(t *testing.T) {
			cc := cfg
			if c.cfg.Max != 0 {
				cc = c.cfg
			}
			d := Plan(cc, t0, c.backlog, c.floor, c.fleet)
			if !slices.Equal(d.Launched, c.launch) || !slices.Equal(d.Drained, c.terminate) || !slices.Equal(d.Replaced, c.replace) {
				t.Errorf("launched %v, terminated %v, replaced %v; want %v, %v, %v", d.Launched, d.Drained, d.Replaced, c.launch, c.terminate, c.replace)
			}
			if d.Running+d.Draining != len(c.fleet) {
				t.Errorf("running %d + draining %d do not account for %d instances", d.Running, d.Draining, len(c.fleet))
			}
			if total := len(c.fleet) + len(d.Launched); total > cc.Max && len(d.Launched) > 0 {
				t.Errorf("fleet would grow to %d, cap %d", total, cc.Max)
			}
		})
	}
}

func fleetOf(make func(int) events.Instance, from, to int) []events.Instance {
	var out []events.Instance
	for n := from; n <= to; n++ {
		out = append(out, make(n))
	}
	return out
}

// The cap, and any launch ceiling at or above the fleet's size, hold for
// every backlog and starting fleet, overdue instances included.
func TestPlanNeverExceedsCapOrCeiling(t *testing.T) {
	for max := 1; max <= 20; max++ {
		cfg := Config{Max: max, Prefix: events.DefaultPrefix, BootDeadline: time.Minute}
		for have := 0; have <= max; have++ {
			for draining := 0; draining <= have; draining++ {
				for overdue := 0; draining+overdue <= have; overdue += 1 + have/4 {
					var in []events.Instance
					for n := 1; n <= have; n++ {
						switch {
						case n <= draining:
							in = append(in, inst(n, events.Draining, true))
						case n <= draining+overdue:
							in = append(in, booting(n, events.Running, time.Hour))
						default:
							in = append(in, inst(n, events.Running, true))
						}
					}
					for _, backlog := range []int{0, 1, 9, 10, 50, 95, 96, 1000} {
						d := Plan(cfg, t0, backlog, 0, in)
						if len(in)+len(d.Launched) > max {
							t.Fatalf("max %d, %d instances (%d draining, %d overdue), backlog %d: launches %v", max, have, draining, overdue, backlog, d.Launched)
						}
						if len(d.Replaced) != overdue {
							t.Fatalf("%d overdue, replaced %v", overdue, d.Replaced)
						}
						for ceiling := have; ceiling <= max; ceiling++ {
							if held := d.Within(ceiling); len(in)+len(held.Launched) > ceiling ||
								len(held.Launched)+len(held.Held) != len(d.Launched) {
								t.Fatalf("ceiling %d over %d instances: launches %v, holds %v of %v", ceiling, have, held.Launched, held.Held, d.Launched)
							}
						}
					}
				}
			}
		}
	}
}

func TestWithin(t *testing.T) {
	for _, c := range []struct {
		name              string
		running, draining int
		launch            []string
		ceiling           int
		want, held        []string
	}{
		{name: "room for all", running: 2, launch: names(3, 4), ceiling: 5, want: names(3, 4)},
		{name: "exactly enough room", running: 2, launch: names(3, 4), ceiling: 4, want: names(3, 4)},
		{name: "the lowest names fit first", running: 2, launch: names(3, 4, 5), ceiling: 3, want: names(3), held: names(4, 5)},
		{name: "at the ceiling nothing launches", running: 3, launch: names(4), ceiling: 3, held: names(4)},
		{name: "draining instances still hold quota", running: 2, draining: 1, launch: names(4), ceiling: 3, held: names(4)},
		{name: "a fleet above the ceiling launches nothing", running: 5, launch: names(6), ceiling: 3, held: names(6)},
		{name: "a ceiling of zero holds everything", launch: names(1, 2), ceiling: 0, held: names(1, 2)},
		{name: "the fleet shrank: refill up to the ceiling", running: 1, launch: names(2, 3, 4), ceiling: 3, want: names(2, 3), held: names(4)},
		{name: "nothing to launch", running: 3, ceiling: 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := Decision{Running: c.running, Draining: c.draining, Launched: slices.Clone(c.launch)}
			got := d.Within(c.ceiling)
			if !slices.Equal(got.Launched, c.want) || !slices.Equal(got.Held, c.held) {
				t.Errorf("launched %v, held %v; want %v, %v", got.Launched, got.Held, c.want, c.held)
			}
			if !slices.Equal(d.Launched, c.launch) {
				t.Errorf("Within changed its receiver's launches to %v", d.Launched)
			}
		})
	}
}

type fakeQueue struct{ backlog int }

func (q *fakeQueue) Counts(context.Context) (events.Counts, error) {
	return events.Counts{Visible: q.backlog}, nil
}

// fakeFleet is a named fake: it records calls and applies them instantly,
// standing in for the process and EC2 fleets, which have their own tests.
// With quota set, it launches names one by one until it holds that many
// instances and then refuses the rest as EC2 does at an account's vCPU
// quota; with lagging set, drained instances stay listed, as EC2's
// eventually consistent DescribeInstances may still show them.
type fakeFleet struct {
	instances []events.Instance
	quota     int
	lagging   bool
	launches  [][]string // every Launch call's names
}

func (f *fakeFleet) List(context.Context) ([]events.Instance, error) {
	return slices.Clone(f.instances), nil
}

func (f *fakeFleet) Launch(_ context.Context, names []string) error {
	f.launches = append(f.launches, slices.Clone(names))
	var launched []string
	for _, n := range names {
		if f.quota > 0 && len(f.instances) >= f.quota {
			return &events.CapacityError{Code: "VcpuLimitExceeded", Message: "You have requested more vCPU capacity than your current vCPU limit", Launched: launched}
		}
		f.instances = append(f.instances, events.Instance{Name: n, State: events.Running, Idle: true, Ready: true})
		launched = append(launched, n)
	}
	return nil
}

func (f *fakeFleet) Drain(_ context.Context, names []string) error {
	if !f.lagging {
		f.instances = slices.DeleteFunc(f.instances, func(in events.Instance) bool { return slices.Contains(names, in.Name) })
	}
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

// logLines captures a scaler's log, at every level, as JSON lines.
type logLines struct{ bytes.Buffer }

func (l *logLines) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// count returns how many lines have the level and the message.
func (l *logLines) count(t *testing.T, level, msg string) int {
	t.Helper()
	n := 0
	for line := range bytes.Lines(l.Bytes()) {
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("not a JSON log line: %q", line)
		}
		if m["level"] == level && m["msg"] == msg {
			n++
		}
	}
	return n
}

const (
	ceilingStarted = "launch ceiling: launches refused for want of capacity; holding the fleet at its size"
	ceilingHolds   = "launch ceiling holds"
	ceilingLifted  = "launch ceiling lifted"
)

// A quota refusal holds the fleet at the size it reached: logged and
// marked once per episode, retried after a backoff that doubles up to its
// maximum, and lifted by the first full launch.
func TestLaunchCeilingEpisode(t *testing.T) {
	q, f := &fakeQueue{backlog: 100}, &fakeFleet{quota: 3}
	var logs logLines
	s := New(Config{Max: 19, CapacityBackoff: 30 * time.Second, CapacityBackoffMax: 5 * time.Minute}, q, f, logs.logger())
	now := t0
	s.now = func() time.Time { return now }
	step := func(at time.Duration) Decision {
		t.Helper()
		now = t0.Add(at)
		d, err := s.Reconcile(context.Background())
		if err != nil {
			t.Fatalf("at %v: a refused launch is not an error: %v", at, err)
		}
		return d
	}

	d := step(0)
	if !slices.Equal(d.Launched, names(1, 2, 3)) || len(d.Held) != 16 || d.Desired != 19 {
		t.Fatalf("first refusal: launched %v, held %v, desired %d", d.Launched, d.Held, d.Desired)
	}
	if c := d.CeilingStarted; c == nil || c.Code != "VcpuLimitExceeded" || c.Size != 3 || c.RetryIn != 30*time.Second || c.Message == "" {
		t.Fatalf("the episode's first decision is not marked as such: %+v", d.CeilingStarted)
	}
	if n := logs.count(t, "WARN", ceilingStarted); n != 1 {
		t.Fatalf("%d warnings at the start of an episode, want 1", n)
	}

	// Backing off: nothing beyond the three, and no call to EC2 for it.
	calls := len(f.launches)
	for _, at := range []time.Duration{5 * time.Second, 10 * time.Second, 29 * time.Second} {
		if d := step(at); len(d.Launched) != 0 || len(d.Held) != 16 || d.CeilingStarted != nil {
			t.Fatalf("at %v while backing off: launched %v, held %d, marked %v", at, d.Launched, len(d.Held), d.CeilingStarted)
		}
	}
	if len(f.launches) != calls {
		t.Fatalf("launches tried while backing off: %v", f.launches[calls:])
	}
	// A worker lost meanwhile is replaced, up to the ceiling only.
	f.instances = f.instances[1:]
	if d := step(29 * time.Second); !slices.Equal(d.Launched, names(1)) || len(d.Held) != 16 {
		t.Fatalf("refill: launched %v, held %d", d.Launched, len(d.Held))
	}

	// Each attempt after the backoff is refused again: silently, with the
	// backoff doubling to its maximum.
	at := 30 * time.Second
	for _, want := range []time.Duration{60, 120, 240, 300, 300} {
		d := step(at)
		if len(d.Launched) != 0 || d.CeilingStarted != nil || s.episode == nil {
			t.Fatalf("at %v: launched %v, marked %v, episode %v", at, d.Launched, d.CeilingStarted, s.episode)
		}
		if s.episode.backoff != want*time.Second || s.episode.RetryIn != want*time.Second {
			t.Fatalf("at %v: backoff %v, want %v", at, s.episode.backoff, want*time.Second)
		}
		calls = len(f.launches)
		if d := step(at + s.episode.backoff - time.Second); len(d.Launched) != 0 || len(f.launches) != calls {
			t.Fatalf("tried launching %v during the backoff", f.launches[calls:])
		}
		at += want * time.Second
	}
	if n := logs.count(t, "WARN", ceilingStarted); n != 1 {
		t.Fatalf("%d warnings in one episode, want 1", n)
	}
	if n := logs.count(t, "DEBUG", ceilingHolds); n != 5 {
		t.Fatalf("%d debug lines for 5 further refusals", n)
	}

	// Capacity returns: the next attempt launches in full and ends it.
	f.quota = 0
	if d := step(at); len(d.Launched) != 16 || len(d.Held) != 0 {
		t.Fatalf("after capacity returned: launched %v, held %v", d.Launched, d.Held)
	}
	if s.episode != nil || logs.count(t, "INFO", ceilingLifted) != 1 {
		t.Fatalf("episode %+v still on, or not lifted once", s.episode)
	}
	step(at + time.Second)
	if n := logs.count(t, "INFO", ceilingLifted); n != 1 {
		t.Fatalf("lifted %d times", n)
	}

	// A later refusal is a new episode, announced again.
	f.quota = 19
	q.backlog = 200
	s.cfg.Max = 25
	d = step(at + time.Hour)
	if d.CeilingStarted == nil || d.CeilingStarted.Size != 19 || logs.count(t, "WARN", ceilingStarted) != 2 {
		t.Fatalf("second episode: %+v", d.CeilingStarted)
	}
}

// An episode ends when, after the backoff, no launch is wanted any more:
// the ceiling no longer binds, so a refusal later is news again.
func TestLaunchCeilingEndsWhenNotNeeded(t *testing.T) {
	q, f := &fakeQueue{backlog: 30}, &fakeFleet{quota: 2}
	var logs logLines
	s := New(Config{Max: 19}, q, f, logs.logger())
	now := t0
	s.now = func() time.Time { return now }
	reconcile := func() Decision {
		t.Helper()
		d, err := s.Reconcile(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	if d := reconcile(); d.CeilingStarted == nil || d.CeilingStarted.RetryIn != 30*time.Second {
		t.Fatalf("default backoff: %+v", d.CeilingStarted)
	}
	q.backlog = 5
	now = now.Add(10 * time.Second)
	reconcile()
	if s.episode == nil {
		t.Fatal("the episode ended during its backoff")
	}
	now = now.Add(25 * time.Second)
	reconcile()
	if s.episode != nil || logs.count(t, "INFO", ceilingLifted) != 1 {
		t.Fatalf("episode %+v not lifted once no launch was needed", s.episode)
	}
}

// A refusal alongside another failure is still a ceiling, and the other
// failure is still reported.
func TestCapacityAmongOtherErrors(t *testing.T) {
	refused := &events.CapacityError{Code: "InsufficientInstanceCapacity"}
	other := errors.New("launch template not found")
	for _, c := range []struct {
		err  error
		rest error
	}{
		{refused, nil},
		{errors.Join(refused, other), other},
		{other, other},
		{nil, nil},
	} {
		got := without(c.err, events.ErrNoCapacity)
		if (got == nil) != (c.rest == nil) || (got != nil && !errors.Is(got, c.rest)) || errors.Is(got, events.ErrNoCapacity) {
			t.Errorf("without(%v, ErrNoCapacity) = %v, want %v", c.err, got, c.rest)
		}
	}
}

// Replacements are terminated on every reconcile that still sees them,
// but logged once.
func TestReplacementLoggedOnce(t *testing.T) {
	q := &fakeQueue{backlog: 5}
	f := &fakeFleet{lagging: true, instances: []events.Instance{{Name: events.InstanceName(events.DefaultPrefix, 1), ID: "i-1", State: events.Running, Launched: t0}}}
	var logs logLines
	s := New(Config{Max: 19, BootDeadline: time.Minute}, q, f, logs.logger())
	now := t0.Add(2 * time.Minute)
	s.now = func() time.Time { return now }
	for range 3 {
		d, err := s.Reconcile(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(d.Replaced, names(1)) {
			t.Fatalf("replaced %v", d.Replaced)
		}
		now = now.Add(time.Second)
	}
	if n := logs.count(t, "WARN", "replacing a worker that did not become ready within the boot deadline"); n != 1 {
		t.Fatalf("logged %d times", n)
	}
	// Once gone, it is forgotten.
	f.instances = f.instances[:0]
	s.Reconcile(context.Background())
	if len(s.replaced) != 0 {
		t.Fatalf("still remembered: %v", s.replaced)
	}
}
