// This file runs the worker fleet as local processes, the
// one-machine stand-in for EC2 instances. The Fleet launches and drains
// processes; each worker reports readiness and idleness through a small
// status file (Reporter); a snapshot file lets other processes, such as
// the web tier, see the fleet (Reader).

package embedded

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/renameio/v2"

	"github.com/surgeml/surge/events"
)

// Environment variables a launched worker receives: those of its flags
// -name and -status-file (see config.Parse).
const (
	EnvInstance   = "SURGE_NAME"        // its name, app-tier-instance-<n>
	EnvStatusFile = "SURGE_STATUS_FILE" // where to report (see Reporter)
)

const snapshotFile = "events.json"

// FleetConfig describes how to run workers.
type FleetConfig struct {
	Dir      string   // state directory: status files and the snapshot
	LogDir   string   // one log file per worker name
	Command  []string // the worker's command line
	Env      []string // extra environment, KEY=value
	StopWait time.Duration
	// LaunchDelay is how long a launched worker is a booting instance
	// before its process starts: on EC2, the pending state, the OS boot
	// and the user data's downloads. The worker's own start (loading the
	// model) comes after it. Zero starts the process at once.
	LaunchDelay time.Duration
	// PoolSize is how many booted instances are kept stopped, the stand-in
	// for the warm pool on EC2: a launch takes one if there is one and
	// boots for StartDelay instead of LaunchDelay; a worker that drains
	// cleanly is stopped into the pool while it has room. The pool starts
	// full, as the scaler fills it while the fleet is idle.
	PoolSize int
	// StartDelay is a pool member's start: stopped → running and the OS
	// boot, without the first boot's user data.
	StartDelay time.Duration
}

// Exit records a worker that has ended.
type Exit struct {
	Name     string
	PID      int
	Drained  bool  // it was told to leave, as opposed to dying on its own
	PeakRSS  int64 // bytes, as last sampled by List
	ExitCode int
}

// Fleet is the set of worker processes this process started.
type Fleet struct {
	cfg FleetConfig
	log *slog.Logger

	mu    sync.Mutex
	procs map[string]*proc
	exits []Exit
	// pooled counts stopped pool members (FleetConfig.PoolSize).
	pooled int
	// published is the fleet as the snapshot file last showed it.
	published []events.Instance
	wg        sync.WaitGroup
}

type proc struct {
	name string
	// cmd is nil while the instance boots (FleetConfig.LaunchDelay);
	// closing abort ends the boot.
	cmd      *exec.Cmd
	abort    chan struct{}
	bootFor  time.Duration
	fromPool bool
	started  time.Time
	draining bool
	peakRSS  int64
}

func (p *proc) booting() bool { return p.cmd == nil }

// abortBoot ends a boot once, however many times it is asked.
func (p *proc) abortBoot() {
	select {
	case <-p.abort:
	default:
		close(p.abort)
	}
}

// NewFleet prepares a fleet, clearing state left by an earlier run.
func NewFleet(cfg FleetConfig, log *slog.Logger) (*Fleet, error) {
	if len(cfg.Command) == 0 {
		return nil, errors.New("process fleet: no worker command")
	}
	if cfg.StopWait <= 0 {
		cfg.StopWait = 30 * time.Second
	}
	for _, dir := range []string{cfg.Dir, cfg.LogDir} {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("process fleet: %w", err)
		}
	}
	stale, _ := filepath.Glob(filepath.Join(cfg.Dir, "*.status"))
	for _, p := range stale {
		os.Remove(p)
	}
	f := &Fleet{cfg: cfg, log: log, procs: map[string]*proc{}, pooled: max(cfg.PoolSize, 0)}
	return f, f.writeSnapshot()
}

// Launch starts one worker process per name.
func (f *Fleet) Launch(ctx context.Context, names []string) error {
	var errs []error
	for _, name := range names {
		errs = append(errs, f.launch(name))
	}
	return errors.Join(errs...)
}

func (f *Fleet) launch(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.procs[name]; ok {
		return fmt.Errorf("worker %s is already running", name)
	}
	p := &proc{name: name, started: time.Now(), bootFor: f.cfg.LaunchDelay}
	if f.pooled > 0 {
		f.pooled--
		p.fromPool, p.bootFor = true, f.cfg.StartDelay
	}
	if p.bootFor <= 0 {
		if err := f.startLocked(p); err != nil {
			return err
		}
		return f.writeSnapshotLocked()
	}
	p.abort = make(chan struct{})
	f.procs[name] = p
	f.log.Info("worker instance booting", "instance", name, "for", p.bootFor, "from_pool", p.fromPool)
	f.wg.Go(func() { f.boot(p) })
	return f.writeSnapshotLocked()
}

// boot waits out the instance's launch, then starts its worker unless it
// was drained or killed meanwhile.
func (f *Fleet) boot(p *proc) {
	t := time.NewTimer(p.bootFor)
	defer t.Stop()
	select {
	case <-t.C:
	case <-p.abort:
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	select {
	case <-p.abort:
		f.endBootLocked(p)
		return
	default:
	}
	if err := f.startLocked(p); err != nil {
		f.log.Error("worker instance booted but its worker did not start", "instance", p.name, "err", err)
		f.endBootLocked(p)
		return
	}
	if err := f.writeSnapshotLocked(); err != nil {
		f.log.Error("writing fleet snapshot", "err", err)
	}
}

// endBootLocked records an instance that ended before its worker ran.
func (f *Fleet) endBootLocked(p *proc) {
	delete(f.procs, p.name)
	if p.fromPool {
		f.pooled++ // stopped again before it ran
	}
	f.exits = append(f.exits, Exit{Name: p.name, Drained: p.draining})
	f.log.Info("worker instance ended while booting", "instance", p.name, "drained", p.draining)
	if err := f.writeSnapshotLocked(); err != nil {
		f.log.Error("writing fleet snapshot", "err", err)
	}
}

// startLocked starts p's worker process and registers it.
func (f *Fleet) startLocked(p *proc) error {
	name := p.name
	logFile, err := os.OpenFile(filepath.Join(f.cfg.LogDir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("launching %s: %w", name, err)
	}
	status := f.statusPath(name)
	os.Remove(status)
	cmd := exec.Command(f.cfg.Command[0], f.cfg.Command[1:]...)
	cmd.Env = append(append(os.Environ(), f.cfg.Env...), EnvInstance+"="+name, EnvStatusFile+"="+status)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Own process group, so a terminal's Ctrl-C reaches only the
	// supervisor, which then drains the workers in order; and a worker
	// whose supervisor dies is told to leave.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("launching %s: %w", name, err)
	}
	p.cmd = cmd
	f.procs[name] = p
	f.log.Info("worker launched", "instance", name, "pid", cmd.Process.Pid)
	f.wg.Go(func() {
		err := cmd.Wait()
		logFile.Close()
		f.reap(p, err)
	})
	return nil
}

func (f *Fleet) reap(p *proc, waitErr error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.procs, p.name)
	os.Remove(f.statusPath(p.name))
	e := Exit{Name: p.name, PID: p.cmd.Process.Pid, Drained: p.draining, ExitCode: p.cmd.ProcessState.ExitCode(), PeakRSS: p.peakRSS}
	f.exits = append(f.exits, e)
	if p.draining && waitErr == nil && f.pooled < f.cfg.PoolSize {
		f.pooled++ // stopped, not terminated: booted once, it starts sooner
	}
	if p.draining && waitErr == nil {
		f.log.Info("worker left", "instance", p.name, "pid", e.PID, "peak_rss_mb", e.PeakRSS>>20)
	} else {
		f.log.Warn("worker ended unexpectedly", "instance", p.name, "pid", e.PID, "err", waitErr)
	}
	if err := f.writeSnapshotLocked(); err != nil {
		f.log.Error("writing fleet snapshot", "err", err)
	}
}

// Drain asks workers to finish what they hold and exit (SIGTERM).
func (f *Fleet) Drain(ctx context.Context, names []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	var errs []error
	for _, name := range names {
		p, ok := f.procs[name]
		if !ok {
			continue // already gone
		}
		if p.booting() {
			p.draining = true
			p.abortBoot()
			continue
		}
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
			errs = append(errs, fmt.Errorf("draining %s: %w", name, err))
			continue
		}
		p.draining = true
	}
	return errors.Join(append(errs, f.writeSnapshotLocked())...)
}

// Kill ends a worker at once (SIGKILL), as a crash would: for fault
// tests.
func (f *Fleet) Kill(name string) error {
	f.mu.Lock()
	p, ok := f.procs[name]
	if ok && p.booting() {
		p.abortBoot()
	}
	f.mu.Unlock()
	if !ok {
		return fmt.Errorf("no worker %s", name)
	}
	if p.booting() {
		return nil
	}
	return p.cmd.Process.Kill()
}

// List reports the workers with the state their status files give, and
// republishes the snapshot if that changed.
func (f *Fleet) List(context.Context) ([]events.Instance, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.writeSnapshotLocked(); err != nil {
		return nil, fmt.Errorf("writing fleet snapshot: %w", err)
	}
	return slices.Clone(f.published), nil
}

func (f *Fleet) listLocked() []events.Instance {
	out := make([]events.Instance, 0, len(f.procs))
	for _, p := range f.procs {
		if p.booting() {
			// No process yet, hence no pid: readers keep it while the
			// snapshot's writer lives (FleetReader.List).
			in := events.Instance{Name: p.name, State: events.Pending, Launched: p.started}
			if p.draining {
				in.State = events.Draining
			}
			out = append(out, in)
			continue
		}
		p.peakRSS = max(p.peakRSS, PeakRSS(p.cmd.Process.Pid))
		in := events.Instance{Name: p.name, ID: strconv.Itoa(p.cmd.Process.Pid), State: events.Pending, Launched: p.started}
		if st, err := readStatus(f.statusPath(p.name)); err == nil {
			in.MetricsAddr = st.MetricsAddr
			if st.Ready {
				in.State, in.Idle, in.Ready = events.Running, st.Held == 0, true
			}
		}
		if p.draining {
			in.State = events.Draining
		}
		out = append(out, in)
	}
	slices.SortFunc(out, func(a, b events.Instance) int { return events.CompareInstanceNames(a.Name, b.Name) })
	return out
}

// Exits returns the workers that have ended so far.
func (f *Fleet) Exits() []Exit {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.exits)
}

// Stop drains every worker and waits for them, killing any still running
// after StopWait.
func (f *Fleet) Stop(ctx context.Context) {
	f.mu.Lock()
	names := make([]string, 0, len(f.procs))
	for name := range f.procs {
		names = append(names, name)
	}
	f.mu.Unlock()
	f.Drain(ctx, names)
	f.List(ctx) // a last memory sample before they go
	done := make(chan struct{})
	go func() { f.wg.Wait(); close(done) }()
	select {
	case <-done:
		return
	case <-time.After(f.cfg.StopWait):
	case <-ctx.Done():
	}
	f.mu.Lock()
	for _, p := range f.procs {
		if p.booting() {
			continue // its boot was aborted by the drain and ends on its own
		}
		f.log.Warn("worker did not drain in time; killing it", "instance", p.name)
		p.cmd.Process.Kill()
	}
	f.mu.Unlock()
	<-done
}

// PeakRSS is a live process's peak resident memory in bytes (VmHWM), or 0
// if it cannot be read. Unlike the rusage a parent gets when the child
// exits, it does not include the parent's memory at fork time.
func PeakRSS(pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(data)) {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb * 1024
		}
	}
	return 0
}

func (f *Fleet) statusPath(name string) string {
	return filepath.Join(f.cfg.Dir, name+".status")
}

func (f *Fleet) writeSnapshot() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.writeSnapshotLocked()
}

// writeSnapshotLocked publishes the fleet for other processes when it has
// changed since the last time.
func (f *Fleet) writeSnapshotLocked() error {
	instances := f.listLocked()
	if f.published != nil && slices.Equal(instances, f.published) {
		return nil
	}
	data, err := json.Marshal(snapshot{Updated: time.Now().UTC(), Writer: os.Getpid(), Instances: instances})
	if err != nil {
		return err
	}
	if err := renameio.WriteFile(filepath.Join(f.cfg.Dir, snapshotFile), data, 0o640); err != nil {
		return err
	}
	f.published = instances
	return nil
}

type snapshot struct {
	Updated time.Time `json:"updated"`
	// Writer is the pid of the process running the fleet: it vouches for
	// instances still booting, which have no process of their own.
	Writer    int               `json:"writer"`
	Instances []events.Instance `json:"instances"`
}

// FleetReader shows the fleet to processes other than the one running it.
type FleetReader struct{ dir string }

// NewFleetReader reads the snapshot in dir.
func NewFleetReader(dir string) *FleetReader { return &FleetReader{dir: dir} }

// List returns the instances in the latest snapshot that are still alive.
// No snapshot means no fleet yet.
func (r *FleetReader) List(context.Context) ([]events.Instance, error) {
	data, err := os.ReadFile(filepath.Join(r.dir, snapshotFile))
	if errors.Is(err, os.ErrNotExist) {
		return []events.Instance{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading fleet snapshot: %w", err)
	}
	var s snapshot
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("reading fleet snapshot: %w", err)
	}
	// The snapshot is only as fresh as its writer; a process that died
	// since (with its supervisor, say) is not part of the fleet.
	live := []events.Instance{}
	for _, in := range s.Instances {
		pid, err := strconv.Atoi(in.ID)
		if in.ID == "" {
			pid, err = s.Writer, nil
		}
		if err == nil && pid > 0 && syscall.Kill(pid, 0) == nil {
			live = append(live, in)
		}
	}
	return live, nil
}
