package emulate

import (
	"bufio"
	"context"
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
)

// unit is the part of a systemd service unit the emulator's stand-in for
// systemd understands: what Surge's boot scripts write. No real systemd
// can run here; anything else in a unit is refused, so a boot script that
// grows a feature the stand-in would silently ignore fails in emulation.
type unit struct {
	name               string
	exec               []string
	envFiles, env      []string
	dirs               []string // CacheDirectory, LogsDirectory, under /var/cache and /var/log
	output             string   // StandardOutput/StandardError=append:<path>
	restart            string   // no, on-failure, always
	restartDelay       time.Duration
	startLimitInterval time.Duration
	startLimitBurst    int
	onFailure          []string
}

// ignoredUnitKeys are settings that change nothing the emulation can show.
var ignoredUnitKeys = []string{
	"Description", "After", "Wants", "WantedBy", "User", "KillSignal", "TimeoutStopSec",
	"NoNewPrivileges", "ProtectSystem", "ProtectHome", "PrivateTmp", "Type",
}

func parseUnit(name, text string) (*unit, error) {
	u := &unit{name: name, restart: "no", restartDelay: 100 * time.Millisecond, startLimitInterval: 10 * time.Second, startLimitBurst: 5}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("unit %s: line %q", name, line)
		}
		var err error
		switch k {
		case "ExecStart":
			u.exec = strings.Fields(v)
		case "EnvironmentFile":
			u.envFiles = append(u.envFiles, v)
		case "Environment":
			u.env = append(u.env, v)
		case "CacheDirectory":
			u.dirs = append(u.dirs, "/var/cache/"+v)
		case "LogsDirectory":
			u.dirs = append(u.dirs, "/var/log/"+v)
		case "StandardOutput", "StandardError":
			path, ok := strings.CutPrefix(v, "append:")
			if !ok {
				return nil, fmt.Errorf("unit %s: %s=%s: only append:<file> is emulated", name, k, v)
			}
			u.output = path
		case "Restart":
			u.restart = v
		case "RestartSec":
			u.restartDelay, err = unitDuration(v)
		case "StartLimitIntervalSec":
			u.startLimitInterval, err = unitDuration(v)
		case "StartLimitBurst":
			u.startLimitBurst, err = strconv.Atoi(v)
		case "OnFailure":
			u.onFailure = strings.Fields(v)
		default:
			if !slices.Contains(ignoredUnitKeys, k) {
				return nil, fmt.Errorf("unit %s: %s is not emulated", name, k)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("unit %s: %s: %w", name, k, err)
		}
	}
	if len(u.exec) == 0 {
		return nil, fmt.Errorf("unit %s has no ExecStart", name)
	}
	return u, nil
}

// unitDuration reads systemd's time spans as Surge's units write them:
// bare seconds, or Go-style durations.
func unitDuration(v string) (time.Duration, error) {
	if n, err := strconv.Atoi(v); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	return time.ParseDuration(v)
}

// runsWebTier reports whether the unit's process is the web tier.
func (u *unit) runsWebTier() bool { return strings.HasSuffix(u.exec[0], "/webtier") }

// powersOff reports whether the unit's job is to power the instance off,
// the only command the stand-in runs without a binary of the instance's.
func (u *unit) powersOff() bool {
	return len(u.exec) == 2 && filepath.Base(u.exec[0]) == "systemctl" && u.exec[1] == "poweroff"
}

// service runs one unit's process on an emulated instance, restarting it
// as the unit says, until stopped.
type service struct {
	u    *unit
	host *instance
	log  *slog.Logger

	mu      sync.Mutex
	cmd     *exec.Cmd
	stopped bool
	done    chan struct{}
}

func (s *service) run(ctx context.Context) {
	defer close(s.done)
	var starts []time.Time
	for ctx.Err() == nil {
		now := time.Now()
		starts = slices.DeleteFunc(starts, func(t time.Time) bool { return s.u.startLimitInterval > 0 && now.Sub(t) > s.u.startLimitInterval })
		if s.u.startLimitInterval > 0 && len(starts) >= s.u.startLimitBurst {
			s.log.Error("unit failed: start limit hit", "unit", s.u.name, "starts", len(starts), "within", s.u.startLimitInterval)
			s.host.unitFailed(s.u)
			return
		}
		starts = append(starts, now)
		err := s.runOnce()
		if s.isStopped() || ctx.Err() != nil {
			return
		}
		failed := err != nil
		s.log.Info("unit exited", "unit", s.u.name, "err", err)
		if !(s.u.restart == "always" || s.u.restart == "on-failure" && failed) {
			if failed {
				s.host.unitFailed(s.u)
			}
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(s.u.restartDelay):
		}
	}
}

func (s *service) runOnce() error {
	h := s.host
	env, err := h.serviceEnv(s.u)
	if err != nil {
		return err
	}
	for _, d := range s.u.dirs {
		if err := os.MkdirAll(h.path(d), 0o755); err != nil {
			return err
		}
	}
	cmd := exec.Command(h.path(s.u.exec[0]), s.u.exec[1:]...)
	cmd.Env = env
	cmd.Dir = h.path("/")
	if s.u.output != "" {
		out, err := os.OpenFile(h.path(s.u.output), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		defer out.Close()
		cmd.Stdout, cmd.Stderr = out, out
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if s.u.runsWebTier() {
		// The front door (front.go): a socket on the shared port.
		ln, err := h.m.frontListener(context.Background())
		if err != nil {
			return err
		}
		defer ln.Close()
		cmd.ExtraFiles = []*os.File{ln}
		cmd.Env = append(cmd.Env, listenFDEnv+"="+strconv.Itoa(listenFD))
	}
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return nil
	}
	if err := cmd.Start(); err != nil {
		s.mu.Unlock()
		return err
	}
	s.cmd = cmd
	s.mu.Unlock()
	s.log.Info("unit started", "unit", s.u.name, "pid", cmd.Process.Pid)
	err = cmd.Wait()
	s.mu.Lock()
	s.cmd = nil
	s.mu.Unlock()
	return err
}

// running reports whether the unit's process runs now.
func (s *service) running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

func (s *service) isStopped() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopped
}

// stop signals the process (SIGTERM: a drain, as at shutdown; SIGKILL: the
// instance is gone) and stops restarting it.
func (s *service) stop(sig syscall.Signal) {
	s.mu.Lock()
	s.stopped = true
	if s.cmd != nil {
		syscall.Kill(-s.cmd.Process.Pid, sig)
	}
	s.mu.Unlock()
}
