// Package localrun runs the whole system on one machine: the web tier as a
// process (or several on one port, webtiers.go), the scaler in this
// process, and the worker fleet as processes it launches and drains. It is
// what `surge run`, the benchmark and the end-to-end tests start; and the
// chaos run (chaos.go) that kills parts of it under load and counts what
// every client finally learned.
package localrun

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/surgeml/surge/events"
	"github.com/surgeml/surge/internal/backend"
	"github.com/surgeml/surge/internal/embedded"
	"github.com/surgeml/surge/internal/frontend"
	"github.com/surgeml/surge/internal/metrics"
	"github.com/surgeml/surge/internal/scaler"
)

// Config describes a local system.
type Config struct {
	Bin     string         // directory holding the webtier and worker binaries
	Backend backend.Config // local backend; DataDir holds everything
	Host    string         // web tier listen host, empty for all interfaces
	Port    int            // web tier port; 0 picks a free one
	// Web is how many web tiers serve the port [1]. More than one share
	// it through the kernel's SO_REUSEPORT, each under an instance id of
	// its own, and one that dies is replaced under a new id.
	Web int
	// MaxWorkers caps the fleet; MinWorkers [0] are kept with no backlog.
	MaxWorkers, MinWorkers int
	// Tick and ScaleInDelay tune the scaler (see scaler.Config).
	Tick, ScaleInDelay time.Duration
	// ReplyQueueGrace is how long the reply queue of a web tier that is
	// gone must stay empty before the scaler's sweeper deletes it
	// [scaler.DefaultReplyQueueGrace].
	ReplyQueueGrace time.Duration
	// LaunchDelay is how long a launched worker boots, as an instance
	// would, before its process starts (embedded.FleetConfig.LaunchDelay).
	LaunchDelay time.Duration
	// PoolSize and StartDelay model a warm pool of stopped instances
	// (embedded.FleetConfig.PoolSize).
	PoolSize   int
	StartDelay time.Duration
	// WorkerArgs are passed to every worker: model, gallery, threads...
	WorkerArgs []string
	// WebArgs are passed to the web tier.
	WebArgs []string
	// DrainTimeout bounds how long Stop lets the web tier answer its open
	// uploads, with the fleet still working [frontend.DefaultDrainTimeout].
	DrainTimeout time.Duration
	// Metrics, if set, is given the scaler's decisions (backlog,
	// desired, running, draining, launches, drains) for surge run's
	// -metrics-addr.
	Metrics *metrics.Scaler
	// Lock is the data directory's lock (LockData), for a caller that
	// takes it early to fail fast; Start takes it otherwise. Either way
	// the system owns it: Stop, or a failing Start, releases it.
	Lock *embedded.DirLock
}

// lockFile is the data directory's lock of a whole local system. Its web
// tier holds another, webtier.lock (each of several, webtier-<id>.lock),
// against a web tier run on its own.
const lockFile = "surge.lock"

// LockData takes the data directory dir for one local system, or fails at
// once naming the process that holds it (a *embedded.InUseError). Two
// systems on one directory would take each other's results.
func LockData(dir string) (*embedded.DirLock, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	return embedded.LockDir(abs, lockFile, embedded.Command())
}

// System is a running local deployment.
type System struct {
	URL      string
	Fleet    *embedded.Fleet
	Backends *backend.Backends

	prefix   string
	web      *webTiers
	scaler   func() *scaler.Scaler
	sweeper  *scaler.Sweeper
	tick     time.Duration
	changed  func() <-chan struct{}
	mu       sync.Mutex
	drain    time.Duration
	stopScal context.CancelFunc
	scalDone chan struct{}
	lock     *embedded.DirLock
}

// webExitMargin is how long past its drain timeout the web tier gets to
// answer what is left 503, hand over and exit before it is killed.
const webExitMargin = 15 * time.Second

// Report is what a stopped system leaves behind.
type Report struct {
	WebPeakRSS int64 // bytes, the largest of the web tiers serving at the end
	Workers    []embedded.Exit
}

// Start brings the system up and returns once its web tiers answer.
func Start(ctx context.Context, cfg Config, log *slog.Logger) (sys *System, err error) {
	if cfg.Lock == nil {
		if cfg.Lock, err = LockData(cfg.Backend.DataDir); err != nil {
			return nil, err
		}
	}
	defer func() {
		if err != nil {
			cfg.Lock.Release()
		}
	}()
	if cfg.Tick <= 0 {
		cfg.Tick = time.Second
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = frontend.DefaultDrainTimeout
	}
	data, err := filepath.Abs(cfg.Backend.DataDir)
	if err != nil {
		return nil, err
	}
	cfg.Backend.DataDir = data
	logs := filepath.Join(data, "logs")
	if err := os.MkdirAll(logs, 0o750); err != nil {
		return nil, err
	}
	common := []string{
		"-backend", "local", "-data", data, "-prefix", cfg.Backend.Prefix,
		"-visibility", cfg.Backend.Visibility.String(), "-max-receives", strconv.Itoa(cfg.Backend.MaxReceives),
		"-latency", cfg.Backend.Latency.String(),
	}
	b, err := backend.Open(ctx, cfg.Backend)
	if err != nil {
		return nil, err
	}
	s := &System{Backends: b, prefix: cfg.Backend.Prefix, drain: cfg.DrainTimeout, lock: cfg.Lock}
	web := webSpec{
		bin: cfg.Bin, host: cfg.Host, data: data,
		args: slices.Concat(common, []string{
			"-max-workers", strconv.Itoa(cfg.MaxWorkers), "-min-workers", strconv.Itoa(cfg.MinWorkers), "-drain-timeout", cfg.DrainTimeout.String(),
		}, cfg.WebArgs),
	}
	s.web, err = startWebTiers(ctx, web, cfg.Web, cfg.Port, logs, log)
	if err != nil {
		b.Close()
		return nil, err
	}
	s.URL = s.web.current()[0].URL

	fl, err := embedded.NewFleet(embedded.FleetConfig{
		Dir:    backend.FleetDir(data),
		LogDir: logs,
		// Each worker serves /metrics on a free loopback port of its own,
		// which its status file names and /status shows per instance.
		Command: slices.Concat([]string{filepath.Join(cfg.Bin, "worker")}, common, []string{"-metrics-addr", "127.0.0.1:0"}, cfg.WorkerArgs),
		// Up to MaxWorkers processes share this machine's few cores, each
		// running one inference at a time (a worker's default inferences
		// follow GOMAXPROCS); a Go scheduler per process sized for every
		// core only adds thread wake-ups.
		Env:         []string{"GOMAXPROCS=1"},
		LaunchDelay: cfg.LaunchDelay,
		PoolSize:    cfg.PoolSize,
		StartDelay:  cfg.StartDelay,
	}, log)
	if err != nil {
		s.web.stop(webExitMargin)
		b.Close()
		return nil, err
	}
	s.Fleet = fl
	s.scaler = func() *scaler.Scaler {
		return scaler.New(scaler.Config{Max: cfg.MaxWorkers, Min: cfg.MinWorkers, ScaleInDelay: cfg.ScaleInDelay, Decided: observe(cfg.Metrics)}, b.Requests, fl, log)
	}
	// Reply queues of web tiers that are gone, this run's or an earlier
	// one's on this data, are drained into the shared response queue,
	// which every tier reads, and deleted; with one web tier there are
	// none unless an earlier run had several.
	s.sweeper = scaler.NewSweeper(events.NamesFor(cfg.Backend.Prefix), b.Replies, b.Responses, b.WebTiers, cfg.ReplyQueueGrace, log)
	s.tick, s.changed = cfg.Tick, b.Changed
	s.startScaler(ctx)
	return s, nil
}

func (s *System) startScaler(ctx context.Context) {
	scalCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	s.mu.Lock()
	s.stopScal, s.scalDone = stop, done
	s.mu.Unlock()
	go func() {
		defer close(done)
		var sweeping sync.WaitGroup
		sweeping.Go(func() { s.sweeper.Run(scalCtx, s.tick) })
		s.scaler().Run(scalCtx, s.tick, s.tick/5, s.changed)
		sweeping.Wait()
	}()
}

func (s *System) stopScaler() {
	s.mu.Lock()
	stop, done := s.stopScal, s.scalDone
	s.mu.Unlock()
	stop()
	<-done
}

// RestartScaler stops the scaler and starts a new one, as a crashed and
// restarted controller would: it knows nothing but the fleet and the
// queue as it finds them.
func (s *System) RestartScaler(ctx context.Context) {
	s.stopScaler()
	s.startScaler(ctx)
}

// observe feeds the scaler's decisions to m, if set.
func observe(m *metrics.Scaler) func(scaler.Decision, error) {
	if m == nil {
		return nil
	}
	return func(d scaler.Decision, err error) {
		// A failed reconcile may still have launched or drained some.
		m.Acted(len(d.Launched), len(d.Drained)+len(d.Replaced))
		if err == nil {
			m.Sizes(d.Backlog, d.Desired, d.Running, d.Draining)
		}
	}
}

// Done is closed if the web tier exits on its own, or one of several
// could not be kept up; Exited then says why.
func (s *System) Done() <-chan struct{} { return s.web.done }

// Exited waits for Done and says why it was closed: nil when the one web
// tier exited.
func (s *System) Exited() error {
	<-s.web.done
	return s.web.exited
}

// WebTiers are the web tiers serving now, by slot.
func (s *System) WebTiers() []*WebTier { return s.web.current() }

// KillWebTier ends the web tier serving in slot (from 0) with SIGKILL,
// as a crash would, and returns it once it is dead. With several, another
// takes its slot under a new id.
func (s *System) KillWebTier(slot int) *WebTier {
	t := s.web.tier(slot)
	t.Kill()
	return t
}

// ReplyQueues reads the web tiers' reply queues: the backlog of those of
// the tiers serving, and the names of those left of tiers that are gone.
func (s *System) ReplyQueues(ctx context.Context) (backlog int, dead []string, err error) {
	b := s.Backends
	queues, err := b.Replies.List(ctx)
	if err != nil {
		return 0, nil, err
	}
	names := events.NamesFor(s.prefix)
	serving := map[string]bool{}
	for _, t := range s.WebTiers() {
		serving[t.ID] = true
	}
	for _, name := range queues {
		if !serving[names.ReplyInstance(name)] {
			dead = append(dead, name)
			continue
		}
		q, err := b.Replies.Open(ctx, name)
		if err != nil {
			return 0, nil, err
		}
		c, err := q.Counts(ctx)
		if err != nil {
			return 0, nil, err
		}
		backlog += c.Backlog()
	}
	return backlog, dead, nil
}

// Hurry cuts short a Stop's drain, already started or next: the web tiers
// answer the uploads still waiting 503 with their ids at once.
func (s *System) Hurry() { s.web.hurry() }

// Stop shuts down in dependency order. The web tiers go first: they take
// no new uploads and answer the open ones, for up to the drain timeout,
// while the scaler and the workers keep going, since they are what answers
// them. Then the scaler stops deciding and the workers finish what they
// hold. Requests still queued stay for the next run on this data. Stop
// returns an error if a web tier could not answer every open upload.
func (s *System) Stop(ctx context.Context) (Report, error) {
	r := Report{WebPeakRSS: s.web.peakRSS()}
	webErr := s.web.stop(s.drain + webExitMargin)
	if webErr != nil {
		webErr = fmt.Errorf("%w (see the logs in %s)", webErr, s.web.logs)
	}
	s.stopScaler()
	s.Fleet.Stop(ctx)
	r.Workers = s.Fleet.Exits()
	return r, errors.Join(webErr, s.Backends.Close(), s.lock.Release())
}
