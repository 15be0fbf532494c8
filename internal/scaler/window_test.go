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
			ticks := cfg.ticks(scheduled, start, start.Add(scalerTimeout))
			if len(ticks) == 0 || !ticks[len(ticks)-1].Before(scheduled.Add(period)) {
				t.Fatalf("delivered %v late: minute %d ticks %v reach into the next minute", delivered, i, ticks)
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

func TestTicks(t *testing.T) {
	cfg := LambdaConfig{Tick: 5 * time.Second, Window: time.Minute, Margin: 3 * time.Second}
	at := time.Date(2026, 11, 26, 17, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name               string
		scheduled, now, dl time.Time
		n                  int
		last               time.Duration // after scheduled
	}{
		{"on time, no deadline", at, at, time.Time{}, 11, 55 * time.Second},
		{"late delivery keeps the scheduled grid", at, at.Add(7 * time.Second), time.Time{}, 11, 55 * time.Second},
		{"a short deadline ends it early", at, at, at.Add(30 * time.Second), 5, 25 * time.Second},
		{"a deadline just past the window does not", at, at, at.Add(63 * time.Second), 11, 55 * time.Second},
		{"a stale event gets none", at, at.Add(61 * time.Second), time.Time{}, 0, 0},
		{"an event from the future gets none", at.Add(2 * time.Minute), at, time.Time{}, 0, 0},
		{"no scheduled time gets none", time.Time{}, at, time.Time{}, 0, 0},
	} {
		got := cfg.ticks(c.scheduled, c.now, c.dl)
		if len(got) != c.n {
			t.Errorf("%s: %d ticks %v, want %d", c.name, len(got), got, c.n)
			continue
		}
		if c.n > 0 && got[len(got)-1].Sub(c.scheduled) != c.last {
			t.Errorf("%s: last tick %v after the scheduled time, want %v", c.name, got[len(got)-1].Sub(c.scheduled), c.last)
		}
	}
}
