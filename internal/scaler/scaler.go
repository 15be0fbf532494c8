// Package scaler sizes the worker fleet to the request backlog. Each
// reconcile reads the queue, asks the policy for a size and launches or
// drains workers to reach it. Scale-out is immediate; scale-in waits until
// the backlog has called for fewer workers for a short window, and only
// drains idle workers, so no one's work is interrupted.
package scaler

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/surgeml/surge/internal/fleet"
	"github.com/surgeml/surge/internal/queue"
	"github.com/surgeml/surge/internal/retry"
	"github.com/surgeml/surge/internal/scaling"
)

// Queue is the request queue's counts.
type Queue interface {
	Counts(ctx context.Context) (queue.Counts, error)
}

// Fleet is the set of workers.
type Fleet interface {
	List(ctx context.Context) ([]fleet.Instance, error)
	// Launch starts workers with the given names.
	Launch(ctx context.Context, names []string) error
	// Drain tells workers to finish what they hold and leave.
	Drain(ctx context.Context, names []string) error
}

// Config tunes a scaler.
type Config struct {
	Max    int    // fleet cap [scaling.DefaultMax]
	Prefix string // instance names [fleet.DefaultPrefix]
	// ScaleInDelay is how long the backlog must call for fewer workers
	// before any are drained, so a momentarily empty queue between two
	// requests does not send a worker away. Zero drains at once.
	ScaleInDelay time.Duration
}

// Decision is one reconcile's outcome, logged and returned.
type Decision struct {
	Backlog    int      `json:"backlog"`
	Desired    int      `json:"desired"`
	Running    int      `json:"running"` // instances not draining, before this decision
	Draining   int      `json:"draining"`
	Launched   []string `json:"launched,omitempty"`
	Terminated []string `json:"terminated,omitempty"` // drained
}

// Scaler reconciles a fleet with a queue.
type Scaler struct {
	cfg   Config
	queue Queue
	fleet Fleet
	log   *slog.Logger
	now   func() time.Time

	history []sample // desired sizes within ScaleInDelay, oldest first
}

type sample struct {
	at      time.Time
	desired int
}

// New returns a scaler.
func New(cfg Config, q Queue, f Fleet, log *slog.Logger) *Scaler {
	if cfg.Max == 0 {
		cfg.Max = scaling.DefaultMax
	}
	if cfg.Prefix == "" {
		cfg.Prefix = fleet.DefaultPrefix
	}
	return &Scaler{cfg: cfg, queue: q, fleet: f, log: log, now: time.Now}
}

// Reconcile makes one scaling decision and acts on it.
func (s *Scaler) Reconcile(ctx context.Context) (Decision, error) {
	counts, err := s.queue.Counts(ctx)
	if err != nil {
		return Decision{}, fmt.Errorf("reading the backlog: %w", err)
	}
	instances, err := s.fleet.List(ctx)
	if err != nil {
		return Decision{}, fmt.Errorf("listing the fleet: %w", err)
	}
	if counts.Backlog() == 0 {
		// No message is queued or in flight, so no worker can be holding
		// one, whatever it last reported (EC2 instances report nothing).
		for i := range instances {
			instances[i].Idle = true
		}
	}
	d := Plan(s.cfg, counts.Backlog(), s.stabilised(scaling.Desired(counts.Backlog(), s.cfg.Max)), instances)
	if len(d.Launched) > 0 {
		if err := s.fleet.Launch(ctx, d.Launched); err != nil {
			return d, fmt.Errorf("launching %v: %w", d.Launched, err)
		}
	}
	if len(d.Terminated) > 0 {
		if err := s.fleet.Drain(ctx, d.Terminated); err != nil {
			return d, fmt.Errorf("draining %v: %w", d.Terminated, err)
		}
	}
	return d, nil
}

// stabilised records desired and returns the size to scale in to: the
// largest desired size seen within the delay.
func (s *Scaler) stabilised(desired int) int {
	now := s.now()
	s.history = append(s.history, sample{now, desired})
	keep := 0
	for keep < len(s.history)-1 && now.Sub(s.history[keep].at) > s.cfg.ScaleInDelay {
		keep++
	}
	s.history = s.history[keep:]
	highest := 0
	for _, h := range s.history {
		highest = max(highest, h.desired)
	}
	return highest
}

// Plan is the pure part of a reconcile: given the backlog, the size below
// which not to scale in (see ScaleInDelay), and the fleet, which names to
// launch and which to drain.
// New instances take the lowest free numbers; the total never exceeds the
// cap, counting instances still draining.
func Plan(cfg Config, backlog, scaleInFloor int, instances []fleet.Instance) Decision {
	desired := scaling.Desired(backlog, cfg.Max)
	d := Decision{Backlog: backlog, Desired: desired}
	used := map[int]bool{}
	var active []fleet.Instance
	for _, in := range instances {
		if n, err := fleet.Index(cfg.Prefix, in.Name); err == nil {
			used[n] = true
		}
		if in.State == fleet.Draining {
			d.Draining++
		} else {
			active = append(active, in)
		}
	}
	d.Running = len(active)

	if want := desired - len(active); want > 0 {
		room := cfg.Max - len(instances)
		for n := 1; n <= cfg.Max && len(d.Launched) < min(want, room); n++ {
			if !used[n] {
				d.Launched = append(d.Launched, fleet.Name(cfg.Prefix, n))
			}
		}
	}

	target := max(desired, scaleInFloor)
	if excess := len(active) - target; excess > 0 {
		// Drain idle instances only, highest numbers first, so the
		// remaining fleet keeps the low names.
		slices.SortFunc(active, func(a, b fleet.Instance) int {
			ai, _ := fleet.Index(cfg.Prefix, a.Name)
			bi, _ := fleet.Index(cfg.Prefix, b.Name)
			return bi - ai
		})
		for _, in := range active {
			if len(d.Terminated) == excess {
				break
			}
			if in.Idle {
				d.Terminated = append(d.Terminated, in.Name)
			}
		}
	}
	return d
}

// Run reconciles every tick, and also soon after wake fires (when the
// queue changes), but never more often than every minGap. Errors are
// logged; the loop goes on until ctx ends.
func (s *Scaler) Run(ctx context.Context, tick, minGap time.Duration, wake func() <-chan struct{}) {
	for {
		// Subscribe before looking, so a change during the reconcile
		// still wakes the next one.
		var woken <-chan struct{}
		if wake != nil {
			woken = wake()
		}
		switch d, err := s.Reconcile(ctx); {
		case err != nil && ctx.Err() == nil:
			s.log.Error("reconcile failed", "err", err)
		case len(d.Launched) > 0 || len(d.Terminated) > 0:
			s.log.Info("scaled", "backlog", d.Backlog, "desired", d.Desired, "running", d.Running,
				"draining", d.Draining, "launched", d.Launched, "terminated", d.Terminated)
		}
		t := time.NewTimer(tick)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-woken:
			t.Stop()
			retry.Sleep(ctx, minGap)
		}
	}
}
