// Package localrun runs the whole system on one machine: the web tier as a
// process, the scaler in this process, and the worker fleet as processes
// it launches and drains. It is what `surge run`, the benchmark and the
// end-to-end tests start.
package localrun

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/surgeml/surge/internal/backend"
	"github.com/surgeml/surge/internal/procfleet"
	"github.com/surgeml/surge/internal/scaler"
	"github.com/surgeml/surge/internal/webproc"
)

// Config describes a local system.
type Config struct {
	Bin     string         // directory holding the webtier and worker binaries
	Backend backend.Config // local backend; DataDir holds everything
	Host    string         // web tier listen host, empty for all interfaces
	Port    int            // web tier port; 0 picks a free one
	// MaxWorkers caps the fleet.
	MaxWorkers int
	// Tick and ScaleInDelay tune the scaler (see scaler.Config).
	Tick, ScaleInDelay time.Duration
	// WorkerArgs are passed to every worker: model, gallery, threads...
	WorkerArgs []string
	// WebArgs are passed to the web tier.
	WebArgs []string
}

// System is a running local deployment.
type System struct {
	URL      string
	Fleet    *procfleet.Fleet
	Backends *backend.Backends

	web      *webproc.Process
	scaler   func() *scaler.Scaler
	tick     time.Duration
	changed  func() <-chan struct{}
	mu       sync.Mutex
	stopScal context.CancelFunc
	scalDone chan struct{}
}

// Report is what a stopped system leaves behind.
type Report struct {
	WebPeakRSS int64 // bytes
	Workers    []procfleet.Exit
}

// Start brings the system up and returns once the web tier answers.
func Start(ctx context.Context, cfg Config, log *slog.Logger) (*System, error) {
	if cfg.Tick <= 0 {
		cfg.Tick = time.Second
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
	}
	b, err := backend.Open(ctx, cfg.Backend)
	if err != nil {
		return nil, err
	}
	s := &System{Backends: b}
	s.web, err = webproc.Start(ctx, cfg.Bin,
		append(append([]string{}, common...), append([]string{"-max-workers", strconv.Itoa(cfg.MaxWorkers)}, cfg.WebArgs...)...),
		nil, cfg.Host, cfg.Port, filepath.Join(logs, "webtier.log"))
	if err != nil {
		b.Close()
		return nil, err
	}
	s.URL = s.web.URL

	fl, err := procfleet.New(procfleet.Config{
		Dir:     backend.FleetDir(data),
		LogDir:  logs,
		Command: append(append([]string{filepath.Join(cfg.Bin, "worker")}, common...), cfg.WorkerArgs...),
		// Up to MaxWorkers processes share this machine's few cores, each
		// running one inference at a time; a Go scheduler per process
		// sized for every core only adds thread wake-ups.
		Env: []string{"GOMAXPROCS=1"},
	}, log)
	if err != nil {
		s.web.Stop()
		b.Close()
		return nil, err
	}
	s.Fleet = fl
	s.scaler = func() *scaler.Scaler {
		return scaler.New(scaler.Config{Max: cfg.MaxWorkers, ScaleInDelay: cfg.ScaleInDelay}, b.Requests, fl, log)
	}
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
		s.scaler().Run(scalCtx, s.tick, s.tick/5, s.changed)
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

// Done is closed if the web tier exits on its own.
func (s *System) Done() <-chan struct{} { return s.web.Done() }

// Stop shuts down in dependency order: the scaler stops deciding, the
// workers drain, then the web tier answers what it can and exits.
func (s *System) Stop(ctx context.Context) (Report, error) {
	s.stopScaler()
	s.Fleet.Stop(ctx)
	r := Report{WebPeakRSS: s.web.PeakRSS()}
	err := s.web.Stop()
	r.Workers = s.Fleet.Exits()
	return r, errors.Join(err, s.Backends.Close())
}
