package scaler

import (
	"testing"
	"time"
)

// Consecutive scheduled invocations leave no gap in scaling decisions:
// one minute's ticks run up to a tick before the next minute's scheduled
// time, and never reach it, so two minutes (whose launch scopes, hence
// client tokens, differ) never decide at the same moment.
func TestConsecutiveWindowsAbut(t *testing.T) {
	cfg := LambdaConfig{}
	cfg.defaults()
	period := time.Minute // the stack's rate(1 minute)
	minute := time.Date(2026, 11, 26, 17, 0, 0, 0, time.UTC)
	for _, delivered := range []time.Duration{0, 300 * time.Millisecond, 4 * time.Second} {
		var decisions []time.Time
		for i := range 3 {
			scheduled := minute.Add(time.Duration(i) * period)
			start := scheduled.Add(delivered)
			// A Lambda deadline of the stack's timeout from the start.
			end, ok := cfg.window(scheduled, start, start.Add(scalerTimeout))
			ticks := cfg.ticks(scheduled, end)
			if !ok || len(ticks) == 0 || !ticks[len(ticks)-1].Before(scheduled.Add(period)) {
				t.Fatalf("delivered %v late: minute %d ticks %v reach into the next minute", delivered, i, ticks)
			}
			if end.After(scheduled.Add(period)) {
				t.Fatalf("delivered %v late: minute %d decides until %v, into the next minute", delivered, i, end)
			}
			decisions = append(append(decisions, start), ticks...)
		}
		for i := 1; i < len(decisions); i++ {
			if gap := decisions[i].Sub(decisions[i-1]); gap <= 0 || gap > cfg.Tick+delivered {
				t.Errorf("delivered %v late: %v between decisions at %v and %v, want at most a tick (%v) plus the delivery delay",
					delivered, gap, decisions[i-1].Format(time.TimeOnly), decisions[i].Format(time.TimeOnly), cfg.Tick)
			}
		}
	}
}

// scalerTimeout is the stack's scaler Lambda timeout (cdk/stack.go); it
// must outlast the window by the handler's margin, or the deadline, not
// the window, would end each minute early and open a gap.
const scalerTimeout = 70 * time.Second

// The window is when every reconcile of an invocation must be over: the
// end of its minute, or a margin before Lambda's deadline; an event with
// nothing left of its window gets no reconcile at all.
func TestWindow(t *testing.T) {
	cfg := LambdaConfig{Tick: 5 * time.Second, Window: time.Minute, Margin: 3 * time.Second}
	at := time.Date(2026, 11, 26, 17, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name               string
		scheduled, now, dl time.Time
		ok                 bool
		end                time.Duration // after scheduled
		ticks              int
		last               time.Duration // the last tick, after scheduled
	}{
		{"on time, no deadline", at, at, time.Time{}, true, time.Minute, 11, 55 * time.Second},
		{"late delivery keeps the scheduled grid and end", at, at.Add(7 * time.Second), time.Time{}, true, time.Minute, 11, 55 * time.Second},
		{"the Lambda timeout past the window", at, at, at.Add(70 * time.Second), true, time.Minute, 11, 55 * time.Second},
		{"a short deadline ends it early", at, at, at.Add(30 * time.Second), true, 27 * time.Second, 5, 25 * time.Second},
		{"a deadline just past the window does not", at, at, at.Add(63 * time.Second), true, time.Minute, 11, 55 * time.Second},
		{"started in the last moment of its minute", at, at.Add(time.Minute - time.Millisecond), time.Time{}, true, time.Minute, 11, 55 * time.Second},
		{"started as its minute ends: stale", at, at.Add(time.Minute), time.Time{}, false, 0, 0, 0},
		{"a retry a minute later: stale", at, at.Add(61 * time.Second), time.Time{}, false, 0, 0, 0},
		{"a retry hours later: stale", at, at.Add(3 * time.Hour), time.Time{}, false, 0, 0, 0},
		{"a clock a little behind the event's", at.Add(2 * time.Second), at, time.Time{}, true, time.Minute, 11, 55 * time.Second},
		{"an event from the future", at.Add(2 * time.Minute), at, time.Time{}, false, 0, 0, 0},
		{"no scheduled time", time.Time{}, at, time.Time{}, false, 0, 0, 0},
		{"a deadline already past", at, at.Add(10 * time.Second), at.Add(12 * time.Second), false, 0, 0, 0},
	} {
		end, ok := cfg.window(c.scheduled, c.now, c.dl)
		if ok != c.ok {
			t.Errorf("%s: ok %v (end %v), want %v", c.name, ok, end, c.ok)
			continue
		}
		if !ok {
			continue
		}
		if got := end.Sub(c.scheduled); got != c.end {
			t.Errorf("%s: window ends %v after the scheduled time, want %v", c.name, got, c.end)
		}
		ticks := cfg.ticks(c.scheduled, end)
		if len(ticks) != c.ticks {
			t.Errorf("%s: %d ticks %v, want %d", c.name, len(ticks), ticks, c.ticks)
			continue
		}
		if c.ticks > 0 && ticks[len(ticks)-1].Sub(c.scheduled) != c.last {
			t.Errorf("%s: last tick %v after the scheduled time, want %v", c.name, ticks[len(ticks)-1].Sub(c.scheduled), c.last)
		}
	}
}
