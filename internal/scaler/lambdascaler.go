// Scheduled scaler on AWS Lambda. EventBridge
// invokes it once a minute; each invocation reconciles the fleet every few
// seconds for the whole of that minute, so the fleet reacts in seconds,
// and makes its last decision one tick before the next minute's first.

package scaler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	awsevents "github.com/aws/aws-lambda-go/events"

	"github.com/surgeml/surge/events"
	"github.com/surgeml/surge/internal/aws"
)

// LambdaConfig tunes the reconcile loop. Zero values take the defaults in
// brackets.
type LambdaConfig struct {
	Tick   time.Duration // between reconciles [5s]
	Window time.Duration // how long one invocation reconciles from its scheduled time [60s]: at most the schedule's period, so windows never overlap
	Margin time.Duration // stop this long before the Lambda deadline [3s]
	// LaunchAllowance is how long before the window's end launching
	// stops [DefaultLaunchAllowance]: time for EC2 to answer the last
	// launch, so that the next minute's invocation sees it.
	LaunchAllowance time.Duration
	Fleet           string // names the fleet in metrics
}

func (c *LambdaConfig) defaults() {
	if c.Tick <= 0 {
		c.Tick = 5 * time.Second
	}
	if c.Window <= 0 {
		c.Window = DefaultWindow
	}
	if c.Margin <= 0 {
		c.Margin = 3 * time.Second
	}
	if c.LaunchAllowance <= 0 {
		c.LaunchAllowance = DefaultLaunchAllowance
	}
}

// DefaultLaunchAllowance is a few times what RunInstances usually takes
// to answer. A launch EC2 has received goes ahead even if its caller
// gives up, and DescribeInstances lists it only once EC2 has answered:
// one still being answered when the next minute decides, under other
// client tokens, would be launched again.
const DefaultLaunchAllowance = 5 * time.Second

// DefaultWindow is the schedule's period. Ticks fall strictly inside a
// window, so one minute's last decision comes a tick before the next
// minute's first: no gap in decisions, and no two minutes deciding at
// once under different launch scopes (whose client tokens differ).
const DefaultWindow = time.Minute

// Reconciler makes one scaling decision; *Scaler is one.
type Reconciler interface {
	Reconcile(ctx context.Context) (Decision, error)
}

// Pool is the warm pool the handler keeps filled; *aws.Fleet is one.
type Pool interface {
	MaintainPool(ctx context.Context, bootDeadline time.Duration) (aws.PoolReport, error)
}

// Handler handles EventBridge scheduled events.
type Handler struct {
	cfg          LambdaConfig
	scaler       Reconciler
	log          *slog.Logger
	metrics      io.Writer
	now          func() time.Time
	pool         Pool // nil: no warm pool
	bootDeadline time.Duration
	sweeper      *Sweeper // nil: no web instances' reply queues to sweep
}

// WithSweeper has each invocation sweep the web instances' reply queues
// once, beside its reconciles. It returns h.
func (h *Handler) WithSweeper(sw *Sweeper) *Handler {
	h.sweeper = sw
	return h
}

// WithPool has the handler keep pool filled whenever the fleet is idle,
// replacing members not ready bootDeadline after launch. It returns h.
func (h *Handler) WithPool(pool Pool, bootDeadline time.Duration) *Handler {
	h.pool, h.bootDeadline = pool, bootDeadline
	return h
}

// NewHandler returns a handler. Decisions are logged to log; embedded-metric
// lines go to metrics (stdout in Lambda, where CloudWatch picks them up).
func NewHandler(cfg LambdaConfig, s Reconciler, log *slog.Logger, metrics io.Writer) *Handler {
	cfg.defaults()
	return &Handler{cfg: cfg, scaler: s, log: log, metrics: metrics, now: time.Now}
}

// Summary is what one invocation did.
type Summary struct {
	Reconciles int      `json:"reconciles"`
	Failures   int      `json:"failures"`
	Launched   []string `json:"launched"`
	Terminated []string `json:"terminated"`
	Replaced   []string `json:"replaced"`
	// PoolLaunched are instances launched to join the warm pool.
	PoolLaunched []string `json:"pool_launched,omitempty"`
	// Swept is what the sweep of reply queues did, when there was one.
	Swept *Swept `json:"swept,omitempty"`
}

// Handle reconciles at once, then at the event's scheduled time plus each
// multiple of Tick, until the event's window ends (or Margin before the
// invocation's deadline, if that comes first). Ticks are aligned to the
// scheduled time, so a duplicate delivery of the same event decides at
// the same moments, on the same state, and makes the same launches; their
// EC2 client tokens coincide because the launch scope is the event's id
// and time, which a duplicate shares and no other minute's event does.
//
// From the window's end the next minute's invocation decides, under
// other client tokens, from what DescribeInstances lists, and would
// launch again any name this one was still launching. So no launch starts
// within LaunchAllowance of the window's end (EC2 has it listed by then),
// the end cuts off a reconcile still running, and an event whose window
// is over (a retry Lambda sends later, a delivery delayed past its
// minute) is not reconciled at all.
func (h *Handler) Handle(ctx context.Context, ev awsevents.EventBridgeEvent) (Summary, error) {
	var sum Summary
	if ev.DetailType != "Scheduled Event" || ev.Source != "aws.events" {
		return sum, fmt.Errorf("not a scheduled event: source %q, detail-type %q", ev.Source, ev.DetailType)
	}
	deadline, _ := ctx.Deadline()
	end, ok := h.cfg.window(ev.Time, h.now(), deadline)
	if !ok {
		h.log.Warn("event outside its window: not reconciling (the minute it was for is another invocation's)",
			"event", ev.ID, "scheduled", ev.Time, "window", h.cfg.Window)
		return sum, nil
	}
	ctx = aws.WithLaunchCutoff(aws.WithLaunchScope(ctx, LaunchScope(ev)), end.Add(-h.cfg.LaunchAllowance))
	ctx, cancel := context.WithDeadline(ctx, end)
	defer cancel()
	// The sweep runs beside the reconciles, not before them: it waits on
	// queues, and scaling must not.
	swept := h.sweep(ctx)
	finish := func() (Summary, error) {
		sum.Swept = <-swept
		return sum, summarise(sum)
	}
	h.tick(ctx, &sum)
	for _, next := range h.cfg.ticks(ev.Time, end) {
		wait := next.Sub(h.now())
		if wait < 0 {
			continue // passed while an earlier reconcile ran
		}
		select {
		case <-ctx.Done():
			return finish()
		case <-time.After(wait):
		}
		h.tick(ctx, &sum)
	}
	return finish()
}

// sweep starts the invocation's sweep of reply queues, if it has a
// sweeper; the channel gives what it did (nil: no sweep).
func (h *Handler) sweep(ctx context.Context) <-chan *Swept {
	done := make(chan *Swept, 1)
	if h.sweeper == nil {
		done <- nil
		return done
	}
	go func() {
		swept, err := h.sweeper.Sweep(ctx)
		if err != nil && ctx.Err() == nil {
			h.log.Error("sweeping reply queues", "err", err)
		}
		done <- &swept
	}()
	return done
}

// window is when an invocation for the event scheduled at scheduled,
// starting at now under the Lambda deadline (zero: none), stops deciding:
// the scheduled time plus Window, or Margin before the deadline if that
// is sooner. ok is false when there is nothing left of the window: the
// event is stale, or has no scheduled time, or one more than a window
// ahead (a clock far off), whose window would overlap the current
// minute's.
func (c LambdaConfig) window(scheduled, now, deadline time.Time) (end time.Time, ok bool) {
	if scheduled.IsZero() || scheduled.After(now.Add(c.Window)) {
		return time.Time{}, false
	}
	end = scheduled.Add(c.Window)
	if !deadline.IsZero() && deadline.Add(-c.Margin).Before(end) {
		end = deadline.Add(-c.Margin)
	}
	return end, now.Before(end)
}

// ticks are the moments after the first reconcile at which an invocation
// for the event scheduled at scheduled reconciles again: the scheduled
// time plus each multiple of Tick, strictly before end.
func (c LambdaConfig) ticks(scheduled, end time.Time) []time.Time {
	var out []time.Time
	for next := scheduled.Add(c.Tick); next.Before(end); next = next.Add(c.Tick) {
		out = append(out, next)
	}
	return out
}

// LaunchScope is the launch scope of the decisions made for a scheduled
// event: its id and its scheduled time.
func LaunchScope(ev awsevents.EventBridgeEvent) string {
	return "event/" + ev.ID + "/" + ev.Time.UTC().Format(time.RFC3339)
}

func summarise(sum Summary) error {
	if sum.Reconciles > 0 && sum.Failures == sum.Reconciles {
		return errors.New("every reconcile failed")
	}
	return nil
}

func (h *Handler) tick(ctx context.Context, sum *Summary) {
	sum.Reconciles++
	d, err := h.scaler.Reconcile(ctx)
	sum.Launched = append(sum.Launched, d.Launched...)
	sum.Terminated = append(sum.Terminated, d.Drained...)
	sum.Replaced = append(sum.Replaced, d.Replaced...)
	if err != nil && ctx.Err() != nil {
		// Not a failure: the window is over, and what this reconcile did
		// not finish is the next minute's to decide.
		h.log.Warn("reconcile cut off at the end of its window", "err", err, "backlog", d.Backlog, "desired", d.Desired,
			"running", d.Running, "launched", d.Launched, "replaced", d.Replaced)
		if d.CeilingStarted != nil {
			h.emit(d, false)
		}
		return
	}
	if err != nil {
		sum.Failures++
		h.log.Error("reconcile failed", "err", err, "launched", d.Launched, "replaced", d.Replaced)
		if d.CeilingStarted != nil {
			// The episode began in a reconcile that also failed otherwise:
			// it is still the one tick that counts it.
			h.emit(d, false)
		}
		return
	}
	args := []any{"backlog", d.Backlog, "desired", d.Desired, "running", d.Running,
		"draining", d.Draining, "launched", d.Launched, "terminated", d.Drained,
		"replaced", d.Replaced, "held", len(d.Held)}
	if d.LaunchStopped != "" {
		args = append(args, "launch_stopped", d.LaunchStopped)
	}
	h.log.Info("decision", args...)
	h.emit(d, true)
	if h.pool != nil && idle(d) {
		h.maintainPool(ctx, sum)
	}
}

// idle reports whether a decision left nothing to do and no worker in
// the fleet: only then are the pool's vCPUs not wanted by a scale-out.
func idle(d Decision) bool {
	return d.Backlog == 0 && d.Desired == 0 && d.Running == 0 && d.Draining == 0 && len(d.Launched) == 0
}

func (h *Handler) maintainPool(ctx context.Context, sum *Summary) {
	rep, err := h.pool.MaintainPool(ctx, h.bootDeadline)
	sum.PoolLaunched = append(sum.PoolLaunched, rep.Launched...)
	if errors.Is(err, events.ErrLaunchStopped) && ctx.Err() == nil {
		// The scaler was stopped, or the window is nearly over: the pool
		// fills further another time.
		h.log.Info("warm pool: launching stopped partway", "why", err, "members", rep.Members, "launched", rep.Launched)
		err = without(err, events.ErrLaunchStopped)
	}
	if err != nil {
		h.log.Error("keeping the warm pool filled", "err", err, "members", rep.Members, "launched", rep.Launched)
		return
	}
	if len(rep.Launched)+len(rep.Stopped)+len(rep.Replaced)+len(rep.Shed)+len(rep.Outdated) > 0 {
		h.log.Info("warm pool", "members", rep.Members, "launched", rep.Launched, "stopped", rep.Stopped, "replaced", rep.Replaced,
			"shed", rep.Shed, "outdated", rep.Outdated)
	}
}

// emit writes one CloudWatch embedded-metric-format line: the fleet's
// sizes (when sizes is set), and on the tick a launch-ceiling episode
// starts, LaunchCeilingEpisodes = 1, by fleet and by fleet and error code,
// so an alarm on the fleet's sum fires once per episode, not per tick.
func (h *Handler) emit(d Decision, sizes bool) {
	var directives []any
	line := map[string]any{"Fleet": h.cfg.Fleet}
	if sizes {
		directives = append(directives, map[string]any{
			"Namespace":  "Surge",
			"Dimensions": [][]string{{"Fleet"}},
			"Metrics": []any{
				map[string]string{"Name": "Backlog", "Unit": "Count"},
				map[string]string{"Name": "DesiredWorkers", "Unit": "Count"},
				map[string]string{"Name": "RunningWorkers", "Unit": "Count"},
			},
		})
		line["Backlog"] = d.Backlog
		line["DesiredWorkers"] = d.Desired
		line["RunningWorkers"] = d.Running + d.Draining
	}
	if c := d.CeilingStarted; c != nil {
		directives = append(directives, map[string]any{
			"Namespace":  "Surge",
			"Dimensions": [][]string{{"Fleet"}, {"Fleet", "Code"}},
			"Metrics":    []any{map[string]string{"Name": "LaunchCeilingEpisodes", "Unit": "Count"}},
		})
		line["LaunchCeilingEpisodes"] = 1
		line["Code"] = c.Code
		line["CeilingMessage"] = c.Message
		line["CeilingSize"] = c.Size
	}
	line["_aws"] = map[string]any{"Timestamp": h.now().UnixMilli(), "CloudWatchMetrics": directives}
	b, _ := json.Marshal(line)
	fmt.Fprintf(h.metrics, "%s\n", b)
}
