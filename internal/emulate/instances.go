package emulate

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/surgeml/surge/internal/aws"
	"github.com/surgeml/surge/internal/deploy"
	"github.com/surgeml/surge/internal/embedded"
)

// machines is the instance emulator: for every instance the emulated EC2
// reports running it boots a stand-in machine, a directory standing for
// the instance's disk, where it runs the instance's own user data with
// bash, then the systemd units the script enabled; and it stops them when
// EC2 reports the instance shutting down or gone.
type machines struct {
	cfg      Config
	ec2      *ec2.Client // the emulator's own, through the emulated endpoint
	endpoint string      // the emulated AWS endpoint
	shims    string
	awsCLI   string
	dir      string // instance roots
	logs     string
	log      *slog.Logger
	// failDownloads makes an instance's downloads fail for good.
	failDownloads func(instanceID string)

	mu      sync.Mutex
	running map[string]*instance // by instance id
	// stopped are instances EC2 reports stopped: their disks (roots) kept
	// for a start, which boots them without their user data.
	stopped  map[string]*instance
	failLeft int
	webURL   string
	// front holds the front port for the emulation's life (front.go).
	front *os.File
}

// instance is one emulated machine.
type instance struct {
	m        *machines
	id, name string
	zone     string
	arch     string // Go's name of its CPU's architecture: amd64, arm64
	fleet    bool   // a worker of some Surge fleet
	root     string
	md       *metadata
	log      *slog.Logger

	cancel   context.CancelFunc
	done     chan struct{}
	agent    sync.WaitGroup // the log agent's stand-in
	mu       sync.Mutex
	services []*service
	off      bool
	// halted is closed once a stopped instance's processes are gone and
	// its disk may boot again.
	halted chan struct{}
}

func (m *machines) run(ctx context.Context) {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		if err := m.follow(ctx); err != nil && ctx.Err() == nil {
			m.log.Error("following the instances", "err", err)
		}
		select {
		case <-ctx.Done():
			m.stopAll()
			return
		case <-t.C:
		}
	}
}

// follow boots the instances that are running and not booted, and stops
// those that are not running any more.
func (m *machines) follow(ctx context.Context) error {
	var all []types.Instance
	pages := ec2.NewDescribeInstancesPaginator(m.ec2, &ec2.DescribeInstancesInput{})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return err
		}
		for _, r := range page.Reservations {
			all = append(all, r.Instances...)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, in := range all {
		id := sdk.ToString(in.InstanceId)
		state := types.InstanceStateName("")
		if in.State != nil {
			state = in.State.Name
		}
		inst, known := m.running[id]
		switch {
		case state == types.InstanceStateNameRunning && !known:
			if prev, ok := m.stopped[id]; ok {
				delete(m.stopped, id)
				inst = m.startStopped(ctx, in, prev)
			} else {
				inst = m.newInstance(ctx, in)
			}
			m.running[id] = inst
		case known && (state == types.InstanceStateNameShuttingDown || state == types.InstanceStateNameStopping):
			// A shutdown: systemd stops the services (SIGTERM, a drain).
			inst.shutdown(syscall.SIGTERM)
		case known && state == types.InstanceStateNameStopped:
			m.log.Info("instance stopped", "id", id, "name", inst.name)
			inst.halt()
			delete(m.running, id)
			m.stopped[id] = inst
		case !known && m.stopped[id] != nil && (state == types.InstanceStateNameShuttingDown || state == types.InstanceStateNameTerminated):
			// Terminated while stopped: its disk goes.
			m.log.Info("stopped instance gone", "id", id, "state", state)
			m.stopped[id].discard()
			delete(m.stopped, id)
		case known && state != types.InstanceStateNameRunning:
			m.log.Info("instance gone", "id", id, "name", inst.name, "state", state)
			inst.shutdown(syscall.SIGKILL)
			delete(m.running, id)
		}
	}
	// Instances EC2 no longer lists at all.
	listed := func(id string) bool {
		return slices.ContainsFunc(all, func(in types.Instance) bool { return sdk.ToString(in.InstanceId) == id })
	}
	for id, inst := range m.running {
		if !listed(id) {
			inst.shutdown(syscall.SIGKILL)
			delete(m.running, id)
		}
	}
	for id, inst := range m.stopped {
		if !listed(id) {
			inst.discard()
			delete(m.stopped, id)
		}
	}
	return nil
}

func tag(in types.Instance, key string) string {
	for _, t := range in.Tags {
		if sdk.ToString(t.Key) == key {
			return sdk.ToString(t.Value)
		}
	}
	return ""
}

func (m *machines) newInstance(ctx context.Context, in types.Instance) *instance {
	id := sdk.ToString(in.InstanceId)
	inst := &instance{
		m: m, id: id, name: tag(in, "Name"), fleet: tag(in, aws.TagFleet) != "",
		arch: deploy.InstanceArch(string(in.InstanceType)),
		root: filepath.Join(m.dir, id), done: make(chan struct{}),
	}
	if in.Placement != nil {
		inst.zone = sdk.ToString(in.Placement.AvailabilityZone)
	}
	if inst.name == "" {
		inst.name = id
	}
	inst.log = m.log.With("instance", id, "name", inst.name)
	if inst.fleet && m.failLeft > 0 {
		m.failLeft--
		m.failDownloads(id)
		inst.log.Warn("this instance's downloads will fail (injected boot failure)")
	}
	ictx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	inst.cancel = cancel
	go func() {
		defer close(inst.done)
		if err := inst.boot(ictx); err != nil && ictx.Err() == nil {
			inst.log.Error("boot", "err", err)
		}
	}()
	return inst
}

// startStopped boots a stopped instance again on its kept disk, under
// its current Name tag: EC2 runs user data at the first boot only, so
// what starts is the units the first boot enabled.
func (m *machines) startStopped(ctx context.Context, in types.Instance, prev *instance) *instance {
	id := sdk.ToString(in.InstanceId)
	inst := &instance{
		m: m, id: id, name: tag(in, "Name"), fleet: prev.fleet, zone: prev.zone, arch: prev.arch,
		root: prev.root, done: make(chan struct{}),
	}
	if inst.name == "" {
		inst.name = id
	}
	inst.log = m.log.With("instance", id, "name", inst.name)
	ictx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	inst.cancel = cancel
	go func() {
		defer close(inst.done)
		select {
		case <-prev.halted:
		case <-ictx.Done():
			return
		}
		if err := inst.reboot(ictx); err != nil && ictx.Err() == nil {
			inst.log.Error("boot after a stop", "err", err)
		}
	}()
	return inst
}

// reboot waits what an instance takes from running to its services, then
// starts the units enabled on its first boot, with no user data.
func (in *instance) reboot(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case <-time.After(in.m.cfg.scaled(in.m.cfg.Lifecycle.Boot)):
	}
	// /run is a tmpfs: what the last boot left there is gone, except the
	// emulator's record of the enabled units, which on a real machine
	// lives under /etc.
	os.Remove(in.path("/run/surge-emulator/poweroff"))
	os.Remove(in.path("/run/surge-emulator/status"))
	md, err := startMetadata(instanceIdentity{ID: in.id, Name: in.name, Region: in.m.cfg.Region, Zone: in.zone, Role: "surge-instance-role"})
	if err != nil {
		return err
	}
	in.mu.Lock()
	in.md = md
	in.mu.Unlock()
	in.log.Info("booting after a stop: enabled units, no user data")
	if in.agentConfig() != "" {
		in.agent.Add(1)
		go func() { defer in.agent.Done(); in.shipLogs(ctx) }()
	}
	return in.startUnits(ctx)
}

// boot waits what an instance takes from running to its user data, then
// runs the user data and starts the units it enabled.
func (in *instance) boot(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case <-time.After(in.m.cfg.scaled(in.m.cfg.Lifecycle.Boot)):
	}
	for _, d := range []string{"/root", "/run/surge-emulator", "/var", "/tmp"} {
		if err := os.MkdirAll(in.path(d), 0o755); err != nil {
			return err
		}
	}
	// The instance's /var/log lives with the emulator's logs, so it
	// outlives the instance and can be read while it runs.
	logs := filepath.Join(in.m.logs, in.id)
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return err
	}
	if err := os.Symlink(logs, in.path("/var/log")); err != nil {
		return err
	}
	md, err := startMetadata(instanceIdentity{ID: in.id, Name: in.name, Region: in.m.cfg.Region, Zone: in.zone, Role: "surge-instance-role"})
	if err != nil {
		return err
	}
	in.mu.Lock()
	in.md = md
	in.mu.Unlock()
	script, err := in.userData(ctx)
	if err != nil {
		return err
	}
	if script == "" {
		in.log.Info("booted; no user data")
		return nil
	}
	bootLog, err := os.OpenFile(in.path(deploy.BootLog), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer bootLog.Close()
	cmd := exec.CommandContext(ctx, "bash", "-c", script)
	cmd.Env = append(in.baseEnv(),
		deploy.RootEnv+"="+in.root,
		"SURGE_EMULATOR_RUN="+in.path("/run/surge-emulator"),
		"SURGE_EMULATOR_SHIMS="+in.m.shims)
	cmd.Dir = in.path("/root")
	cmd.Stdout, cmd.Stderr = bootLog, bootLog
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	in.log.Info("running user data")
	start := time.Now()
	runErr := cmd.Run()
	in.log.Info("user data finished", "err", runErr, "took", time.Since(start).Round(time.Millisecond))
	if in.agentConfig() != "" {
		in.agent.Add(1)
		go func() { defer in.agent.Done(); in.shipLogs(ctx) }()
	}
	if in.poweredOff() {
		return in.powerOff(ctx)
	}
	if runErr != nil {
		return nil // the script said why in its log; the instance stays up
	}
	swapped, err := in.installedFor("/opt/surge", machineOf[in.arch])
	if err != nil {
		in.log.Error("the instance installed what it cannot run", "arch", in.arch, "err", err)
		fmt.Fprintf(bootLog, "surge emulator: %v\n", err)
		return nil
	}
	if len(swapped) > 0 {
		in.log.Info("running this machine's builds in place of the instance's (emulator stand-in for its CPU)", "arch", in.arch, "replaced", swapped)
	}
	return in.startUnits(ctx)
}

func (in *instance) userData(ctx context.Context) (string, error) {
	out, err := in.m.ec2.DescribeInstanceAttribute(ctx, &ec2.DescribeInstanceAttributeInput{
		InstanceId: &in.id, Attribute: types.InstanceAttributeNameUserData,
	})
	if err != nil {
		return "", fmt.Errorf("reading user data: %w", err)
	}
	if out.UserData == nil || sdk.ToString(out.UserData.Value) == "" {
		return "", nil
	}
	b, err := base64.StdEncoding.DecodeString(sdk.ToString(out.UserData.Value))
	if err != nil {
		return "", fmt.Errorf("user data is not base64: %w", err)
	}
	return string(b), nil
}

// path maps an absolute path on the instance to this machine.
func (in *instance) path(p string) string { return filepath.Join(in.root, p) }

// baseEnv is what every process of the instance starts from: no variable
// of the emulator's own (no credentials: those come from the metadata
// service, as on EC2), only what reaches the emulated AWS.
func (in *instance) baseEnv() []string {
	return []string{
		"PATH=" + in.m.shims + ":" + in.m.awsCLI + ":/usr/local/bin:/usr/bin:/bin",
		"HOME=" + in.path("/root"),
		"LANG=C.UTF-8",
		"AWS_ENDPOINT_URL=" + in.m.endpoint,
		"AWS_EC2_METADATA_SERVICE_ENDPOINT=" + in.md.url,
		"AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE=IPv4",
		// The sleep stand-in's scale, for the boot and for its units.
		"SURGE_EMULATOR_TIME_SCALE=" + strconv.FormatFloat(in.m.cfg.TimeScale, 'f', -1, 64),
	}
}

func (in *instance) record(name string) string {
	b, _ := os.ReadFile(in.path("/run/surge-emulator/" + name))
	return strings.TrimSpace(string(b))
}

func (in *instance) poweredOff() bool {
	_, err := os.Stat(in.path("/run/surge-emulator/poweroff"))
	return err == nil
}

func (in *instance) agentConfig() string { return in.record("cwagent") }

// startUnits starts what the script enabled with `systemctl enable --now`
// (or started).
func (in *instance) startUnits(ctx context.Context) error {
	for _, line := range strings.Split(in.record("systemctl"), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || !(f[0] == "start" || f[0] == "enable" && slices.Contains(f, "--now")) {
			continue
		}
		for _, name := range f[1:] {
			if strings.HasPrefix(name, "-") {
				continue
			}
			u, err := in.readUnit(name)
			if err != nil {
				return err
			}
			s := &service{u: u, host: in, log: in.log, done: make(chan struct{})}
			in.mu.Lock()
			if in.off {
				in.mu.Unlock()
				return nil
			}
			in.services = append(in.services, s)
			in.mu.Unlock()
			go s.run(ctx)
		}
	}
	return nil
}

func (in *instance) readUnit(name string) (*unit, error) {
	b, err := os.ReadFile(in.path("/etc/systemd/system/" + name))
	if err != nil {
		return nil, fmt.Errorf("unit %s: %w", name, err)
	}
	return parseUnit(name, string(b))
}

// serviceEnv is a unit's environment: the instance's, its
// EnvironmentFiles and Environment lines, absolute paths mapped into the
// instance's directory, and the emulator's own additions.
func (in *instance) serviceEnv(u *unit) ([]string, error) {
	env := map[string]string{}
	add := func(kv string) {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return
		}
		if strings.HasPrefix(v, "/") {
			v = in.path(v)
		}
		env[k] = v
	}
	for _, f := range u.envFiles {
		file, err := os.Open(in.path(f))
		if err != nil {
			return nil, fmt.Errorf("unit %s: %w", u.name, err)
		}
		sc := bufio.NewScanner(file)
		for sc.Scan() {
			if line := strings.TrimSpace(sc.Text()); line != "" && line[0] != '#' {
				add(line)
			}
		}
		file.Close()
	}
	for _, kv := range u.env {
		add(kv)
	}
	// The emulator's affordances: one core's worth of Go scheduler per
	// process (many instances share this machine); the worker's status
	// file, so tests can see which instance holds a request; embedded
	// metrics in the log; the web tier on the address this machine
	// serves it at.
	env["GOMAXPROCS"] = "1"
	env[embedded.EnvStatusFile] = in.path("/run/surge-emulator/status")
	if env[deploy.EnvEMF] != "" {
		// The stand-in agent ships log files but has no EMF listener:
		// the lines go to the service's own log instead, as often as the
		// emulation's clock makes a minute, so that a test can read
		// each instance's counts (the web group's OpenUploads, say) soon.
		env[deploy.EnvEMF] = "stdout"
		env[emfPeriodEnv] = max(in.m.cfg.scaled(time.Minute), time.Second).String()
	}
	// The web tier, and what checks on it with its settings (the
	// readiness signal), find it where this machine serves it.
	if web := (deploy.Service{Name: "webtier"}); u.runsWebTier() || slices.Contains(u.envFiles, web.EnvFile()) {
		env["SURGE_HOST"], env["SURGE_PORT"] = in.m.cfg.WebHost, strconv.Itoa(in.m.webPort())
	}
	if u.runsWebTier() {
		in.m.mu.Lock()
		in.m.webURL = "http://" + hostForURL(env["SURGE_HOST"]) + ":" + env["SURGE_PORT"] + "/"
		in.m.mu.Unlock()
	}
	out := in.baseEnv()
	for _, k := range slices.Sorted(maps.Keys(env)) {
		out = append(out, k+"="+env[k])
	}
	return out, nil
}

// emfPeriodEnv is the tiers' -emf-period flag as a variable.
const emfPeriodEnv = "SURGE_EMF_PERIOD"

// webPort is where the web tiers listen on this machine: the configured
// port, or the free one reserveFront took.
func (m *machines) webPort() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cfg.WebPort
}

func hostForURL(h string) string {
	if h == "" || h == "0.0.0.0" {
		return "127.0.0.1"
	}
	return h
}

// unitFailed is systemd's OnFailure: the units it names run; one that
// powers off powers the instance off.
func (in *instance) unitFailed(u *unit) {
	for _, name := range u.onFailure {
		f, err := in.readUnit(name)
		if err != nil {
			in.log.Error("OnFailure unit", "err", err)
			continue
		}
		if f.powersOff() {
			in.log.Warn("unit failed for good; powering off", "unit", u.name, "by", name)
			go in.powerOff(context.Background())
			return
		}
		in.log.Error("OnFailure unit does nothing the emulator can do", "unit", name)
	}
}

// powerOff is an instance-initiated shutdown: EC2 then stops or
// terminates the instance, as its shutdown behaviour says.
func (in *instance) powerOff(ctx context.Context) error {
	in.shutdown(syscall.SIGTERM)
	behaviour := types.ShutdownBehaviorStop
	if out, err := in.m.ec2.DescribeInstanceAttribute(ctx, &ec2.DescribeInstanceAttributeInput{
		InstanceId: &in.id, Attribute: types.InstanceAttributeNameInstanceInitiatedShutdownBehavior,
	}); err == nil && out.InstanceInitiatedShutdownBehavior != nil && sdk.ToString(out.InstanceInitiatedShutdownBehavior.Value) == string(types.ShutdownBehaviorTerminate) {
		behaviour = types.ShutdownBehaviorTerminate
	}
	in.log.Warn("instance powered itself off", "then", behaviour)
	var err error
	if behaviour == types.ShutdownBehaviorTerminate {
		_, err = in.m.ec2.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{in.id}})
	} else {
		_, err = in.m.ec2.StopInstances(ctx, &ec2.StopInstancesInput{InstanceIds: []string{in.id}})
	}
	return err
}

// shutdown stops the instance's services with sig; SIGKILL also ends the
// metadata service and removes the instance's disk, keeping its logs.
func (in *instance) shutdown(sig syscall.Signal) {
	in.end(sig, func() { os.RemoveAll(in.root) })
}

// end stops the services with sig; SIGKILL also ends the boot, the log
// agent and the metadata service, then runs after.
func (in *instance) end(sig syscall.Signal, after func()) {
	in.mu.Lock()
	in.off = true
	services := slices.Clone(in.services)
	in.mu.Unlock()
	for _, s := range services {
		s.stop(sig)
	}
	if sig != syscall.SIGKILL {
		return
	}
	in.cancel()
	go func() {
		<-in.done
		for _, s := range services {
			<-s.done
		}
		in.agent.Wait()
		in.mu.Lock()
		md := in.md
		in.mu.Unlock()
		if md != nil {
			md.close()
		}
		after()
	}()
}

// halt is a stop: the processes end as at a shutdown (SIGTERM first, as
// systemd does, the stragglers killed), and the disk stays for the next
// start. EC2 here reports an instance stopped at once, with no
// "stopping" to drain in, so the drain happens here.
func (in *instance) halt() {
	in.halted = make(chan struct{})
	in.shutdown(syscall.SIGTERM)
	go func() {
		in.mu.Lock()
		services := slices.Clone(in.services)
		in.mu.Unlock()
		grace := time.After(in.m.cfg.scaled(stopGrace))
		for _, s := range services {
			select {
			case <-s.done:
			case <-grace:
			}
		}
		in.end(syscall.SIGKILL, func() { close(in.halted) })
	}()
}

// stopGrace is how long a stop waits for services to end on SIGTERM, as
// systemd's default TimeoutStopSec does on AWS, before it kills them.
const stopGrace = 90 * time.Second

// discard removes a stopped instance's disk once its processes are gone.
func (in *instance) discard() {
	go func() {
		<-in.halted
		os.RemoveAll(in.root)
	}()
}

func (m *machines) stopAll() {
	m.mu.Lock()
	all := slices.Collect(maps.Values(m.running))
	stopped := slices.Collect(maps.Values(m.stopped))
	m.running, m.stopped = map[string]*instance{}, map[string]*instance{}
	m.mu.Unlock()
	for _, in := range all {
		in.shutdown(syscall.SIGKILL)
		<-in.done
	}
	for _, in := range stopped {
		<-in.halted
	}
}

// busy returns an instance whose worker holds a request.
func (m *machines) busy() (string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, id := range slices.Sorted(maps.Keys(m.running)) {
		if embedded.Holding(m.running[id].path("/run/surge-emulator/status")) {
			return id, true
		}
	}
	return "", false
}

// crash loses an instance at once, as a host failure would: its processes
// die without a chance to finish, then EC2 reports it terminated.
func (m *machines) crash(ctx context.Context, id string) error {
	m.mu.Lock()
	in, ok := m.running[id]
	m.mu.Unlock()
	if !ok {
		return fmt.Errorf("no running instance %s", id)
	}
	in.shutdown(syscall.SIGKILL)
	_, err := m.ec2.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{id}})
	return err
}

// webTiers are the ids of the running instances whose web tier process
// runs now, sorted.
func (m *machines) webTiers() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var ids []string
	for id, in := range m.running {
		in.mu.Lock()
		services := slices.Clone(in.services)
		in.mu.Unlock()
		if slices.ContainsFunc(services, func(s *service) bool { return s.u.runsWebTier() && s.running() }) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

func (m *machines) web() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.webURL
}
