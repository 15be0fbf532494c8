package emulate

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/surgeml/surge/internal/awscfg"
	"github.com/surgeml/surge/internal/ec2fleet"
	"github.com/surgeml/surge/internal/fleet"
	"github.com/surgeml/surge/internal/motoserver"
	"github.com/surgeml/surge/internal/procfleet"
	"github.com/surgeml/surge/internal/userdata"
)

// instances is the instance emulator: it keeps one worker process per
// app-tier instance that moto reports running.
type instances struct {
	fleet *ec2fleet.Fleet
	bin   string
	env   []string // the worker's environment, from user data
	logs  string
	log   *slog.Logger

	mu    sync.Mutex
	procs map[string]*emulated // by instance id
}

// emulated is one instance's worker process, as systemd would run it.
type emulated struct {
	id, name string
	cmd      *exec.Cmd
	imds     *fakeIMDS
	status   string
	done     chan struct{}
	exited   time.Time
}

// newInstances reads the worker's configuration from the launch
// template's user data and maps the files it installs to local copies.
func newInstances(cfg Config, moto *motoserver.Server, c *awscfg.Clients, fleetName, script, logs string, log *slog.Logger) (*instances, error) {
	env, err := userdata.ParseEnv(script)
	if err != nil {
		return nil, err
	}
	local := map[string]string{instanceORT: cfg.Files.RuntimeLib, instanceModel: cfg.Files.Model, instanceGallery: cfg.Files.Gallery}
	var list []string
	for k, v := range env {
		if path, ok := local[v]; ok {
			if path == "" {
				return nil, fmt.Errorf("user data sets %s=%s but no local copy was given", k, v)
			}
			v = path
		}
		list = append(list, k+"="+v)
	}
	// The emulator's own affordances: moto instead of AWS, and one core's
	// worth of Go scheduler per process (many share this machine).
	for _, kv := range moto.Env() {
		if !strings.HasPrefix(kv, "AWS_EC2_METADATA_DISABLED=") {
			list = append(list, kv)
		}
	}
	list = append(list, "GOMAXPROCS=1")
	return &instances{
		fleet: ec2fleet.New(c.EC2, fleetName, ""),
		bin:   cfg.Bin,
		env:   list,
		logs:  logs,
		log:   log.With("component", "instance-emulator"),
		procs: map[string]*emulated{},
	}, nil
}

// run follows moto until ctx ends.
func (e *instances) run(ctx context.Context) {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		if err := e.reconcile(ctx); err != nil && ctx.Err() == nil {
			e.log.Error("following the fleet", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (e *instances) reconcile(ctx context.Context) error {
	list, err := e.fleet.List(ctx)
	if err != nil {
		return err
	}
	running := map[string]fleet.Instance{}
	for _, in := range list {
		if in.State == fleet.Running {
			running[in.ID] = in
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for id, p := range e.procs {
		if _, ok := running[id]; !ok {
			// The instance is gone: so is its process, at once and without
			// a chance to finish, as when an instance is lost. Whatever it
			// held comes back when its visibility timeout ends.
			e.log.Info("instance gone; killing its worker", "id", id, "name", p.name)
			p.kill()
			delete(e.procs, id)
		}
	}
	for id, in := range running {
		p, ok := e.procs[id]
		switch {
		case !ok:
			if err := e.boot(in); err != nil {
				e.log.Error("booting instance", "id", id, "err", err)
			}
		case p.failedAgo() > 2*time.Second:
			// systemd's Restart=on-failure, RestartSec=2.
			e.log.Warn("worker failed; restarting it", "id", id)
			p.imds.close()
			delete(e.procs, id)
			if err := e.boot(in); err != nil {
				e.log.Error("restarting worker", "id", id, "err", err)
			}
		}
	}
	return nil
}

func (e *instances) boot(in fleet.Instance) error {
	imds, err := startIMDS(in.ID, in.Name)
	if err != nil {
		return err
	}
	logFile, err := os.OpenFile(filepath.Join(e.logs, in.ID+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		imds.close()
		return err
	}
	p := &emulated{id: in.ID, name: in.Name, imds: imds, status: filepath.Join(e.logs, in.ID+".status"), done: make(chan struct{})}
	p.cmd = exec.Command(filepath.Join(e.bin, "worker"))
	p.cmd.Env = append(append(os.Environ(), e.env...),
		"AWS_EC2_METADATA_SERVICE_ENDPOINT="+imds.url,
		procfleet.EnvStatusFile+"="+p.status)
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		logFile.Close()
		imds.close()
		return err
	}
	e.log.Info("instance booted", "id", in.ID, "name", in.Name, "pid", p.cmd.Process.Pid)
	go func() {
		p.cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	e.procs[in.ID] = p
	return nil
}

// failedAgo is how long ago the worker exited with a failure, or 0.
func (p *emulated) failedAgo() time.Duration {
	select {
	case <-p.done:
	default:
		return 0
	}
	if p.cmd.ProcessState.Success() {
		return 0 // it left on purpose, terminating its instance
	}
	if p.exited.IsZero() {
		p.exited = time.Now()
	}
	return time.Since(p.exited)
}

func (p *emulated) kill() {
	p.cmd.Process.Kill()
	<-p.done
	p.imds.close()
}

// busy returns an instance whose worker holds a request.
func (e *instances) busy() (string, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	ids := make([]string, 0, len(e.procs))
	for id := range e.procs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		if procfleet.Holding(e.procs[id].status) {
			return id, true
		}
	}
	return "", false
}

func (e *instances) stopAll() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for id, p := range e.procs {
		p.kill()
		delete(e.procs, id)
	}
}
