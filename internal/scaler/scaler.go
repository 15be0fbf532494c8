// Package scaler sizes the worker fleet to the request backlog, as a loop
// in the local system and as the scheduled Lambda on AWS
// (lambdascaler.go, wired from its environment by FromEnv in env.go). Each
// reconcile reads the queue, asks the policy for a size and launches or
// drains workers to reach it. Scale-out is immediate; scale-in waits until
// the backlog has called for fewer workers for a short window, and only
// drains idle workers, so no one's work is interrupted. Workers that never
// become ready are replaced after a boot deadline, and a launch refused
// for want of capacity or quota holds the fleet at the size it reached
// until a later attempt succeeds (a launch-ceiling episode).
package scaler

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"github.com/surgeml/surge/events"
	"log/slog"
	"slices"
	"time"
)

// Queue is the request queue's counts.
type Queue interface {
	Counts(ctx context.Context) (events.Counts, error)
}

// Fleet is the set of workers.
type Fleet interface {
	List(ctx context.Context) ([]events.Instance, error)
	// Launch starts workers with the given names. A refusal for want of
	// capacity or quota is a *events.CapacityError naming the workers that
	// did launch; so is a launch that stopped partway otherwise (ctx
	// ended, or launching was no longer allowed), as a
	// *events.LaunchStopped.
	Launch(ctx context.Context, names []string) error
	// Drain tells workers to finish what they hold and leave.
	Drain(ctx context.Context, names []string) error
}

// Config tunes a scaler.
type Config struct {
	Max    int    // fleet cap [events.DefaultMax]
	Min    int    // workers kept even with no backlog [0]; the cap wins
	Prefix string // instance names [events.DefaultPrefix]
	// ScaleInDelay is how long the backlog must call for fewer workers
	// before any are drained, so a momentarily empty queue between two
	// requests does not send a worker away. Zero drains at once.
	ScaleInDelay time.Duration
	// BootDeadline is how long a worker may take from launch to ready
	// before it is replaced; zero waits forever.
	BootDeadline time.Duration
	// CapacityBackoff is how long a launch ceiling holds before launching
	// beyond it is tried again [30s]; each further refusal doubles it, up
	// to CapacityBackoffMax [5m].
	CapacityBackoff, CapacityBackoffMax time.Duration
	// Decided, if set, is given each decision Run makes, and whether its
	// reconcile failed, for metrics.
	Decided func(Decision, error)
}

// Decision is one reconcile's outcome, logged and returned.
type Decision struct {
	Backlog  int `json:"backlog"`
	Desired  int `json:"desired"`
	Running  int `json:"running"`  // instances taking or about to take work, before this decision
	Draining int `json:"draining"` // instances leaving, the replaced ones included
	// Launched are the names launched; after a capacity refusal or a
	// launch stopped partway, only those that did launch.
	Launched []string `json:"launched,omitempty"`
	Drained  []string `json:"drained,omitempty"`
	// Replaced are instances terminated for not becoming ready within
	// the boot deadline. They held no work: a worker takes none before
	// it is ready.
	Replaced []string `json:"replaced,omitempty"`
	// Held are the names the policy wanted launched but a launch ceiling
	// kept back.
	Held []string `json:"held,omitempty"`
	// LaunchStopped says why launching stopped partway, when it did for
	// a reason other than capacity (the scaler was stopped, it was too
	// late in the invocation's window); the rest are the next decision's.
	LaunchStopped string `json:"launch_stopped,omitempty"`
	// CeilingStarted is set on the decision whose launch was refused
	// first in a launch-ceiling episode, and on no other.
	CeilingStarted *Ceiling `json:"ceiling_started,omitempty"`
}

// Ceiling is a launch ceiling: the fleet size at which launches were
// refused, and why.
type Ceiling struct {
	Code    string        `json:"code"` // e.g. VcpuLimitExceeded
	Message string        `json:"message"`
	Size    int           `json:"size"`     // instances held, draining ones included
	RetryIn time.Duration `json:"retry_in"` // until launching beyond it is tried again
}

// Within keeps the decision's launches to what fits under ceiling
// instances in all, draining ones included (they hold quota until they
// are gone); the names kept back move to Held.
func (d Decision) Within(ceiling int) Decision {
	room := max(0, ceiling-(d.Running+d.Draining))
	if len(d.Launched) <= room {
		return d
	}
	d.Held = append(slices.Clone(d.Held), d.Launched[room:]...)
	d.Launched = slices.Clone(d.Launched[:room])
	return d
}

// Scaler reconciles a fleet with a queue.
type Scaler struct {
	cfg   Config
	queue Queue
	fleet Fleet
	log   *slog.Logger
	now   func() time.Time

	history []sample // desired sizes within ScaleInDelay, oldest first
	episode *episode // the launch ceiling in force, if any
	// replaced are the instances (by id, else name) already logged as
	// replaced, so each is logged once while EC2 still lists it.
	replaced map[string]bool
}

// episode is a launch-ceiling episode: from the first refused launch to
// the first full launch after a backoff.
type episode struct {
	Ceiling
	started time.Time
	backoff time.Duration
	retryAt time.Time
}

type sample struct {
	at      time.Time
	desired int
}

// New returns a scaler.
func New(cfg Config, q Queue, f Fleet, log *slog.Logger) *Scaler {
	if cfg.Max == 0 {
		cfg.Max = events.DefaultMaxWorkers
	}
	if cfg.Prefix == "" {
		cfg.Prefix = events.DefaultPrefix
	}
	if cfg.CapacityBackoff <= 0 {
		cfg.CapacityBackoff = 30 * time.Second
	}
	if cfg.CapacityBackoffMax < cfg.CapacityBackoff {
		cfg.CapacityBackoffMax = max(5*time.Minute, cfg.CapacityBackoff)
	}
	return &Scaler{cfg: cfg, queue: q, fleet: f, log: log, now: time.Now, replaced: map[string]bool{}}
}

// Reconcile makes one scaling decision and acts on it. A refused launch
// is not an error: the decision records the ceiling and the scaler holds
// to it.
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
	now := s.now()
	d := Plan(s.cfg, now, counts.Backlog(), s.stabilised(now, events.DesiredWorkers(counts.Backlog(), s.cfg.Min, s.cfg.Max)), instances)
	s.logReplaced(now, d, instances)
	backingOff := s.episode != nil && now.Before(s.episode.retryAt)
	if backingOff {
		d = d.Within(s.episode.Size)
	}
	var errs []error
	if wanted := d.Launched; len(wanted) > 0 {
		err := s.fleet.Launch(ctx, wanted)
		var refused *events.CapacityError
		var stopped *events.LaunchStopped
		switch {
		case errors.As(err, &refused):
			d.Held = append(d.Held, slices.DeleteFunc(slices.Clone(wanted), func(n string) bool { return slices.Contains(refused.Launched, n) })...)
			d.Launched = refused.Launched
			s.ceilingHit(now, &d, refused, len(instances)+len(refused.Launched))
			err = without(err, events.ErrNoCapacity)
		case errors.As(err, &stopped):
			d.Launched, d.LaunchStopped = stopped.Launched, stopped.Cause.Error()
			if ctx.Err() == nil {
				// Stopped on purpose, between one launch and the next:
				// no failure.
				err = without(err, events.ErrLaunchStopped)
			}
		case err == nil && !backingOff:
			s.ceilingLifted(now, len(instances)+len(d.Launched), "launched in full")
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("launching %v: %w", wanted, err))
		}
	} else if !backingOff && len(d.Held) == 0 {
		// Nothing beyond the ceiling is wanted any more: it no longer
		// binds, and a later refusal is news again.
		s.ceilingLifted(now, len(instances), "no launch needed")
	}
	if drain := append(slices.Clone(d.Replaced), d.Drained...); len(drain) > 0 {
		if err := s.fleet.Drain(ctx, drain); err != nil {
			errs = append(errs, fmt.Errorf("draining %v: %w", drain, err))
		}
	}
	return d, errors.Join(errs...)
}

// ceilingHit starts a launch-ceiling episode at size instances, or, in
// one, holds the new size and doubles the backoff. Only the start is
// logged above Debug and marked on the decision, so an account at its
// quota for an hour says so once.
func (s *Scaler) ceilingHit(now time.Time, d *Decision, refused *events.CapacityError, size int) {
	if e := s.episode; e != nil {
		e.Code, e.Message, e.Size = refused.Code, refused.Message, size
		e.backoff = min(2*e.backoff, s.cfg.CapacityBackoffMax)
		e.RetryIn, e.retryAt = e.backoff, now.Add(e.backoff)
		s.log.Debug("launch ceiling holds", "code", e.Code, "message", e.Message, "fleet_size", size,
			"next_attempt_in", e.backoff, "since", e.started)
		return
	}
	e := &episode{
		Ceiling: Ceiling{Code: refused.Code, Message: refused.Message, Size: size, RetryIn: s.cfg.CapacityBackoff},
		started: now, backoff: s.cfg.CapacityBackoff, retryAt: now.Add(s.cfg.CapacityBackoff),
	}
	s.episode = e
	started := e.Ceiling
	d.CeilingStarted = &started
	s.log.Warn("launch ceiling: launches refused for want of capacity; holding the fleet at its size",
		"code", e.Code, "message", e.Message, "fleet_size", size, "wanted", size+len(d.Held), "next_attempt_in", e.backoff)
}

// ceilingLifted ends the episode, if there is one.
func (s *Scaler) ceilingLifted(now time.Time, size int, why string) {
	if s.episode == nil {
		return
	}
	s.log.Info("launch ceiling lifted", "reason", why, "code", s.episode.Code, "fleet_size", size,
		"lasted", now.Sub(s.episode.started))
	s.episode = nil
}

// without is err less the errors in it that match target (a capacity
// refusal, a launch stopped on purpose), which the caller has dealt with.
func without(err, target error) error {
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		var rest []error
		for _, e := range joined.Unwrap() {
			if !errors.Is(e, target) {
				rest = append(rest, e)
			}
		}
		return errors.Join(rest...)
	}
	if errors.Is(err, target) {
		return nil
	}
	return err
}

// logReplaced logs each replaced instance once, however many reconciles
// still see it before its termination shows.
func (s *Scaler) logReplaced(now time.Time, d Decision, instances []events.Instance) {
	seen := map[string]bool{}
	for _, in := range instances {
		key := cmp.Or(in.ID, in.Name)
		seen[key] = true
		if slices.Contains(d.Replaced, in.Name) && !s.replaced[key] {
			s.replaced[key] = true
			s.log.Warn("replacing a worker that did not become ready within the boot deadline",
				"instance", in.Name, "id", in.ID, "state", in.State, "launched", in.Launched,
				"age", now.Sub(in.Launched).Round(time.Second), "boot_deadline", s.cfg.BootDeadline)
		}
	}
	for key := range s.replaced {
		if !seen[key] {
			delete(s.replaced, key) // gone for good
		}
	}
}

// stabilised records desired and returns the size to scale in to: the
// largest desired size seen within the delay.
func (s *Scaler) stabilised(now time.Time, desired int) int {
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

// Plan is the pure part of a reconcile: given the time, the backlog, the
// size below which not to scale in (see ScaleInDelay), and the fleet,
// which names to launch, which to drain and which to replace.
// New instances take the lowest free numbers; the total never exceeds the
// cap, counting instances still draining. An instance not ready within
// the boot deadline is replaced: terminated even if not idle, since a
// worker takes no work before it is ready, and counted as draining from
// then on, so a new name launches in its place as soon as the cap allows.
func Plan(cfg Config, now time.Time, backlog, scaleInFloor int, instances []events.Instance) Decision {
	desired := events.DesiredWorkers(backlog, cfg.Min, cfg.Max)
	d := Decision{Backlog: backlog, Desired: desired}
	used := map[int]bool{}
	var active []events.Instance
	for _, in := range instances {
		if n, err := events.InstanceIndex(cfg.Prefix, in.Name); err == nil {
			used[n] = true
		}
		switch {
		case in.State == events.Draining:
			d.Draining++
		case overdue(cfg, now, in):
			d.Replaced = append(d.Replaced, in.Name)
			d.Draining++
		default:
			active = append(active, in)
		}
	}
	d.Running = len(active)

	if want := desired - len(active); want > 0 {
		room := cfg.Max - len(instances)
		for n := 1; n <= cfg.Max && len(d.Launched) < min(want, room); n++ {
			if !used[n] {
				d.Launched = append(d.Launched, events.InstanceName(cfg.Prefix, n))
			}
		}
	}

	target := max(desired, scaleInFloor)
	if excess := len(active) - target; excess > 0 {
		// Drain idle instances only, highest numbers first, so the
		// remaining fleet keeps the low names.
		slices.SortFunc(active, func(a, b events.Instance) int {
			ai, _ := events.InstanceIndex(cfg.Prefix, a.Name)
			bi, _ := events.InstanceIndex(cfg.Prefix, b.Name)
			return bi - ai
		})
		for _, in := range active {
			if len(d.Drained) == excess {
				break
			}
			if in.Idle {
				d.Drained = append(d.Drained, in.Name)
			}
		}
	}
	return d
}

// overdue reports whether in has had longer than the boot deadline to
// become ready. Instances whose launch time is unknown are given forever.
func overdue(cfg Config, now time.Time, in events.Instance) bool {
	return cfg.BootDeadline > 0 && !in.Ready && !in.Launched.IsZero() && now.Sub(in.Launched) > cfg.BootDeadline
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
		d, err := s.Reconcile(ctx)
		if s.cfg.Decided != nil {
			s.cfg.Decided(d, err)
		}
		switch {
		case err != nil && ctx.Err() == nil:
			s.log.Error("reconcile failed", "err", err)
		case len(d.Launched) > 0 || len(d.Drained) > 0 || len(d.Replaced) > 0:
			s.log.Info("scaled", "backlog", d.Backlog, "desired", d.Desired, "running", d.Running,
				"draining", d.Draining, "launched", d.Launched, "terminated", d.Drained, "replaced", d.Replaced)
		}
		t := time.NewTimer(tick)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-woken:
			t.Stop()
			events.Sleep(ctx, minGap)
		}
	}
}
