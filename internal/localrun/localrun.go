// Package localrun runs the whole system on one machine: the web tier as a
// process, the scaler in this process, and the worker fleet as processes
// it launches and drains. It is what `surge run`, the benchmark and the
// end-to-end tests start.
package localrun

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/surgeml/surge/internal/backend"
	"github.com/surgeml/surge/internal/procfleet"
	"github.com/surgeml/surge/internal/scaler"
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

	cfg      Config
	log      *slog.Logger
	web      *exec.Cmd
	webDone  chan struct{}
	webErr   error
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
	// Bind here and hand the socket to the web tier: a port in use fails
	// now, clearly, and port 0 needs no guessing.
	ln, err := net.Listen("tcp", net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port)))
	if err != nil {
		return nil, fmt.Errorf("web tier address: %w", err)
	}
	lnFile, err := ln.(*net.TCPListener).File()
	ln.Close()
	if err != nil {
		return nil, err
	}
	defer lnFile.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	common := []string{
		"-backend", "local", "-data", data, "-prefix", cfg.Backend.Prefix,
		"-visibility", cfg.Backend.Visibility.String(), "-max-receives", strconv.Itoa(cfg.Backend.MaxReceives),
	}

	b, err := backend.Open(ctx, cfg.Backend)
	if err != nil {
		return nil, err
	}
	s := &System{cfg: cfg, log: log, Backends: b, webDone: make(chan struct{})}

	webLog, err := os.OpenFile(filepath.Join(logs, "webtier.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		b.Close()
		return nil, err
	}
	args := append(append(append([]string{}, common...),
		"-listen-fd", "3", "-max-workers", strconv.Itoa(cfg.MaxWorkers)), cfg.WebArgs...)
	s.web = exec.Command(filepath.Join(cfg.Bin, "webtier"), args...)
	s.web.ExtraFiles = []*os.File{lnFile}
	s.web.Stdout, s.web.Stderr = webLog, webLog
	s.web.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := s.web.Start(); err != nil {
		webLog.Close()
		b.Close()
		return nil, fmt.Errorf("starting the web tier: %w", err)
	}
	go func() {
		s.webErr = s.web.Wait()
		webLog.Close()
		close(s.webDone)
	}()
	host := cfg.Host
	if host == "" {
		host = "127.0.0.1"
	}
	s.URL = "http://" + net.JoinHostPort(host, strconv.Itoa(port))
	if err := s.waitHealthy(ctx, 30*time.Second); err != nil {
		s.stopWeb()
		b.Close()
		return nil, fmt.Errorf("web tier did not come up (see %s): %w", webLog.Name(), err)
	}

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
		s.stopWeb()
		b.Close()
		return nil, err
	}
	s.Fleet = fl
	sc := scaler.New(scaler.Config{Max: cfg.MaxWorkers, ScaleInDelay: cfg.ScaleInDelay}, b.Requests, fl, log)
	scalCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	s.stopScal, s.scalDone = stop, make(chan struct{})
	go func() {
		defer close(s.scalDone)
		sc.Run(scalCtx, cfg.Tick, cfg.Tick/5, b.Changed)
	}()
	return s, nil
}

func (s *System) waitHealthy(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/healthz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = errors.New(resp.Status)
		}
		select {
		case <-s.webDone:
			return fmt.Errorf("it exited: %v", s.webErr)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return err
		}
	}
}

// Done is closed if the web tier exits on its own.
func (s *System) Done() <-chan struct{} { return s.webDone }

// Stop shuts down in dependency order: the scaler stops deciding, the
// workers drain, then the web tier answers what it can and exits.
func (s *System) Stop(ctx context.Context) (Report, error) {
	s.stopScal()
	<-s.scalDone
	s.Fleet.Stop(ctx)
	r := Report{WebPeakRSS: procfleet.PeakRSS(s.web.Process.Pid)}
	err := s.stopWeb()
	r.Workers = s.Fleet.Exits()
	return r, errors.Join(err, s.Backends.Close())
}

func (s *System) stopWeb() error {
	select {
	case <-s.webDone:
	default:
		s.web.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.webDone:
		case <-time.After(45 * time.Second):
			s.web.Process.Kill()
			<-s.webDone
		}
	}
	var exit *exec.ExitError
	if errors.As(s.webErr, &exit) {
		return fmt.Errorf("web tier: %w", s.webErr)
	}
	return nil
}
