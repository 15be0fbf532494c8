// This file writes the boot script of a Surge instance: the worker
// in the launch template, the web tier on its instance. The CDK stack
// renders it; the emulator runs the very same script, so what boots in
// emulation is what boots on EC2.
//
// A boot fetches the service's files from S3 with retries (a new instance
// role can take seconds to work; S3 and the package mirrors have passing
// failures), ships its logs to CloudWatch Logs through the CloudWatch
// agent, and runs the service under systemd. A worker instance whose boot
// or service fails for good powers off, which terminates it (its launch
// template says so), so a broken instance never holds a place in the fleet.

package deploy

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// RootEnv names the variable the script prefixes every path it writes
// with. It is unset on EC2; the emulator sets it to an instance's own
// directory, since it runs the scripts of many instances on one machine.
const RootEnv = "SURGE_INSTANCE_ROOT"

// Service is one Surge binary run under systemd on an instance.
type Service struct {
	// Name is the binary's name: it is fetched to /opt/surge/bin/<Name>
	// (Files must include it) and runs as the unit surge-<Name>.
	Name string
	// Env configures it (SURGE_BACKEND, SURGE_PREFIX, SURGE_MODEL...).
	Env map[string]string
	// Files are fetched from S3 before the service starts.
	Files []ServiceFile
	// Region is where Files' buckets are.
	Region string
	// LogGroup is the CloudWatch Logs group the agent ships the service's
	// and the boot's logs to, one stream each per instance; empty ships
	// nothing.
	LogGroup string
	// MetricsLogGroup, with LogGroup, has the agent also listen on
	// EMFEndpoint for embedded-metric-format lines, which CloudWatch Logs
	// turns into metrics; the service is told where (EnvEMF) and which
	// group to name in each line's _aws.LogGroupName (EnvEMFLogGroup),
	// since the agent would otherwise put them in a group of its own
	// choosing (emf/logs/default) that the instance role may not write.
	MetricsLogGroup string
	// EndOnFailure powers the instance off when its boot fails or its
	// service keeps failing (for workers, whose instances terminate on
	// shutdown, so the scaler replaces them). Without it a failed boot
	// stays up for someone to look at, and the service restarts forever.
	EndOnFailure bool
	// Ready, when set, has the instance tell CloudFormation whether its
	// service answers (the instance's creation policy), so a deployment
	// completes only once it does, and fails at once when it never does.
	Ready *Readiness
}

// Readiness is how an instance signals CloudFormation that its service
// is ready: once http://127.0.0.1:$<PortEnv><Path> answers 200, or when
// Wait has passed without it (a FAILURE signal). The instance finds its
// logical id in its own aws:cloudformation:logical-id tag, which
// CloudFormation puts on what it creates; naming it here would change the
// very user data the CDK derives that id from.
type Readiness struct {
	Stack   string        // the stack's name or id (a CDK token)
	Path    string        // /healthz
	PortEnv string        // the service's variable that holds its port: SURGE_PORT
	Wait    time.Duration // [10m]
}

// readyScript and readyUnit are where the script writes the readiness
// signal's program and unit.
const (
	readyScript = "/opt/surge/bin/surge-ready"
	readyUnit   = "surge-ready.service"
)

// ServiceFile is an S3 object an instance fetches at boot.
type ServiceFile struct {
	Source string // s3://bucket/key
	Path   string // absolute path on the instance
	Mode   string // octal, as chmod takes it
}

// Unit is the service's systemd unit name.
func (s Service) Unit() string { return "surge-" + s.Name + ".service" }

// UnitPath is where the script writes the unit.
func (s Service) UnitPath() string { return "/etc/systemd/system/" + s.Unit() }

// EnvFile is where the script writes the service's environment.
func (s Service) EnvFile() string { return "/etc/surge/" + s.Name + ".env" }

// LogFile is where the service's output goes.
func (s Service) LogFile() string { return "/var/log/surge/" + s.Name + ".log" }

// BootLog is cloud-init's record of the boot script's output.
const BootLog = "/var/log/cloud-init-output.log"

// AgentConfig is where the script writes the CloudWatch agent's
// configuration.
const AgentConfig = "/opt/aws/amazon-cloudwatch-agent/etc/surge.json"

// AgentCtl is the CloudWatch agent's control program, as its Amazon Linux
// package installs it.
const AgentCtl = "/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl"

// EMFEndpoint is the CloudWatch agent's default socket for embedded
// metric format lines.
const EMFEndpoint = "tcp://127.0.0.1:25888"

// The variables that tell a service where its embedded-metric-format
// lines go: the tiers' -emf and -emf-log-group flags (config.EnvName).
const (
	EnvEMF         = "SURGE_EMF"
	EnvEMFLogGroup = "SURGE_EMF_LOG_GROUP"
)

// RenderUserData returns the boot script.
func RenderUserData(s Service) (string, error) {
	if !validKey(strings.ToUpper(s.Name)) {
		return "", fmt.Errorf("service name %q", s.Name)
	}
	var b strings.Builder
	b.WriteString(prelude)
	if s.EndOnFailure {
		b.WriteString(giveUpPowerOff)
	} else {
		b.WriteString(giveUpStay)
	}
	b.WriteString(helpers)

	if s.LogGroup != "" {
		agent, err := agentConfig(s)
		if err != nil {
			return "", err
		}
		// Logs first, so a boot that fails further down is still on
		// record in CloudWatch. Logs are worth having, not worth failing
		// a boot for.
		fmt.Fprintf(&b, `
if retry dnf install -y -q amazon-cloudwatch-agent; then
  install -d -m 0755 "$root%[1]s"
  cat > "$root%[2]s" <<'CWAGENT'
%[3]s
CWAGENT
  retry "$root%[4]s" -a fetch-config -m ec2 -s -c "file:$root%[2]s" ||
    echo "surge: the CloudWatch agent did not start; logs stay on the instance" >&2
else
  echo "surge: no CloudWatch agent; logs stay on the instance" >&2
fi
`, dir(AgentConfig), AgentConfig, agent, AgentCtl)
	}

	env := maps.Clone(s.Env)
	if env == nil {
		env = map[string]string{}
	}
	if s.LogGroup != "" && s.MetricsLogGroup != "" {
		env[EnvEMF], env[EnvEMFLogGroup] = EMFEndpoint, s.MetricsLogGroup
	}
	fmt.Fprintf(&b, "\ninstall -d -m 0755 \"$root/etc/surge\"\ncat > \"$root%s\" <<'SURGE_ENV'\n", s.EnvFile())
	for _, k := range slices.Sorted(maps.Keys(env)) {
		v := env[k]
		// Values go into a systemd EnvironmentFile unquoted; refuse what
		// would need quoting rather than get it subtly wrong.
		if !validKey(k) || !validValue(v) {
			return "", fmt.Errorf("environment entry %s=%q cannot go in user data", k, v)
		}
		fmt.Fprintf(&b, "%s=%s\n", k, v)
	}
	b.WriteString("SURGE_ENV\n\n")

	for _, f := range s.Files {
		if !strings.HasPrefix(f.Path, "/") || !validValue(f.Path) || !validValue(f.Source) || !validValue(s.Region) || f.Mode == "" || strings.Trim(f.Mode, "01234567") != "" {
			return "", fmt.Errorf("file %+v cannot go in user data", f)
		}
		fmt.Fprintf(&b, "fetch %s %s %s %s\n", s.Region, f.Source, f.Path, f.Mode)
	}

	restart := "Restart=on-failure\nRestartSec=2\n"
	limits := "StartLimitIntervalSec=300\nStartLimitBurst=5\nOnFailure=surge-give-up.service\n"
	if !s.EndOnFailure {
		restart = "Restart=always\nRestartSec=5\n"
		limits = "StartLimitIntervalSec=0\n"
	}
	fmt.Fprintf(&b, `
useradd --system --no-create-home --shell /usr/sbin/nologin surge 2>/dev/null || true
install -d -m 0755 "$root/etc/systemd/system"
cat > "$root%[1]s" <<'UNIT'
[Unit]
Description=Surge %[2]s
After=network-online.target
Wants=network-online.target
%[3]s
[Service]
User=surge
EnvironmentFile=%[4]s
Environment=SURGE_CACHE=/var/cache/surge
CacheDirectory=surge
LogsDirectory=surge
ExecStart=/opt/surge/bin/%[2]s
StandardOutput=append:%[5]s
StandardError=append:%[5]s
%[6]sKillSignal=SIGTERM
TimeoutStopSec=120
NoNewPrivileges=true
ProtectSystem=strict
ProtectHome=true
PrivateTmp=true

[Install]
WantedBy=multi-user.target
UNIT
`, s.UnitPath(), s.Name, limits, s.EnvFile(), s.LogFile(), restart)
	if s.EndOnFailure {
		b.WriteString(`cat > "$root/etc/systemd/system/surge-give-up.service" <<'UNIT'
[Unit]
Description=End this instance: its Surge service failed for good

[Service]
Type=oneshot
ExecStart=/usr/bin/systemctl poweroff
UNIT
`)
	}
	b.WriteString(`install -d -m 0755 "$root/etc/logrotate.d"
cat > "$root/etc/logrotate.d/surge" <<'ROTATE'
/var/log/surge/*.log {
  size 50M
  rotate 2
  copytruncate
  missingok
  notifempty
}
ROTATE
systemctl daemon-reload
`)
	units := s.Unit()
	if s.Ready != nil {
		if err := readiness(&b, s); err != nil {
			return "", err
		}
		units += " " + readyUnit
	}
	fmt.Fprintf(&b, "systemctl enable --now %s\necho \"surge: %s started\"\n", units, s.Name)
	// EC2 takes 16 KB of user data; CloudFormation's names can be longer
	// than the CDK tokens that stand for them here.
	if b.Len() > maxScript {
		return "", fmt.Errorf("boot script of %d bytes: EC2 takes at most 16 KB of user data, and deploy-time names need room", b.Len())
	}
	return b.String(), nil
}

// readiness writes the program and the unit that signal CloudFormation
// once the service answers. A unit, not a step of this script: the
// service starts only as the boot ends.
func readiness(b *strings.Builder, s Service) error {
	r := *s.Ready
	if r.Wait <= 0 {
		r.Wait = 10 * time.Minute
	}
	if !validValue(r.Stack) || !validValue(s.Region) || !validKey(r.PortEnv) || !strings.HasPrefix(r.Path, "/") || !validValue(r.Path) {
		return fmt.Errorf("readiness %+v cannot go in user data", r)
	}
	const every = 5 * time.Second
	fmt.Fprintf(b, `
install -d -m 0755 "$root%[1]s"
cat > "$root%[2]s" <<'READY'
#!/bin/bash
# Tells CloudFormation whether this instance's %[3]s answers: its creation
# policy holds the deployment until then.
set -uo pipefail
metadata="${AWS_EC2_METADATA_SERVICE_ENDPOINT:-http://169.254.169.254}"
token=$(curl -sf -X PUT "${metadata%%/}/latest/api/token" -H "X-aws-ec2-metadata-token-ttl-seconds: 300")
id=$(curl -sf -H "X-aws-ec2-metadata-token: $token" "${metadata%%/}/latest/meta-data/instance-id")
status=FAILURE
for attempt in $(seq %[4]d); do
  if curl -sf -o /dev/null --max-time 5 "http://127.0.0.1:${%[5]s}%[6]s"; then status=SUCCESS; break; fi
  sleep %[7]d
done
logical=$(aws ec2 describe-instances --region %[8]s --instance-ids "$id"   --query 'Reservations[0].Instances[0].Tags[?Key==%[9]saws:cloudformation:logical-id%[9]s] | [0].Value' --output text)
echo "surge: %[3]s on $id: $status; signalling $logical of stack %[10]s"
for delay in 2 4 8 16 32 0; do
  if aws cloudformation signal-resource --region %[8]s --stack-name %[10]s     --logical-resource-id "$logical" --unique-id "$id" --status "$status"; then
    exit 0
  fi
  sleep "$delay"
done
echo "surge: CloudFormation did not take the signal" >&2
exit 1
READY
chmod 0755 "$root%[2]s"
cat > "$root/etc/systemd/system/%[11]s" <<'UNIT'
[Unit]
Description=Tell CloudFormation whether Surge %[3]s answers
After=%[12]s

[Service]
Type=oneshot
EnvironmentFile=%[13]s
ExecStart=%[2]s
LogsDirectory=surge
StandardOutput=append:/var/log/surge/ready.log
StandardError=append:/var/log/surge/ready.log

[Install]
WantedBy=multi-user.target
UNIT
`, dir(readyScript), readyScript, s.Name, int(r.Wait/every), r.PortEnv, r.Path, int(every/time.Second), s.Region, "`", r.Stack, readyUnit, s.Unit(), s.EnvFile())
	return nil
}

// maxScript leaves 4 KB of EC2's 16 KB user data limit for what
// CloudFormation puts where CDK tokens stand.
const maxScript = 12 << 10

const prelude = `#!/bin/bash
# Boot script of a Surge instance, rendered by internal/userdata.
# cloud-init runs it as root and records its output in /var/log/cloud-init-output.log.
set -Eeuo pipefail
# Empty on EC2; the emulator runs this same script against a directory of its own.
root="${SURGE_INSTANCE_ROOT:-}"
`

const giveUpPowerOff = `
# A boot that fails for good ends the instance (its shutdown behaviour is
# terminate), so a half-made instance never holds a place in the fleet.
give_up() {
  echo "surge: boot failed: $*; powering off" >&2
  sleep 10 # a moment for the log agent to ship this
  shutdown -h now
  exit 1
}
trap 'give_up "line $LINENO: $BASH_COMMAND exited $?"' ERR
`

const giveUpStay = `
# A boot that fails for good leaves the instance up for someone to look at
# (SSM Session Manager, or its logs in CloudWatch).
give_up() {
  echo "surge: boot failed: $*; the service was not started" >&2
  exit 1
}
trap 'give_up "line $LINENO: $BASH_COMMAND exited $?"' ERR
`

const helpers = `
# retry runs a command up to 6 times, 2, 4, 8, 16 and 32 s apart: a new
# instance role can take seconds to work, and S3 and the package mirrors
# have passing failures.
retry() {
  local delay=2 attempt
  for attempt in 1 2 3 4 5 6; do
    if "$@"; then return 0; fi
    if [ "$attempt" = 6 ]; then break; fi
    echo "surge: attempt $attempt of '$*' failed; trying again in ${delay}s" >&2
    sleep "$delay"
    delay=$((delay * 2))
  done
  return 1
}

# fetch <region> <s3 url> <path> <mode>: download, then move into place, so
# a half-written file is never taken for a whole one.
fetch() {
  install -d -m 0755 "$(dirname "$root$3")"
  retry aws s3 cp --only-show-errors --region "$1" "$2" "$root$3.part"
  chmod "$4" "$root$3.part"
  mv -f "$root$3.part" "$root$3"
}
`

// agentConfig is the CloudWatch agent's configuration: the service's log
// and the boot's, one stream each per instance, and, with a metrics log
// group, a listener on EMFEndpoint (the agent's default for an empty
// "emf" section) whose lines go to the group each line names, in a
// stream named for the instance.
func agentConfig(s Service) (string, error) {
	stream := func(file, name string) map[string]string {
		return map[string]string{
			"file_path":       file,
			"log_group_name":  s.LogGroup,
			"log_stream_name": "{instance_id}/" + name,
			"timezone":        "UTC",
		}
	}
	logs := map[string]any{"logs_collected": map[string]any{"files": map[string]any{
		"collect_list": []any{stream(s.LogFile(), s.Name), stream(BootLog, "boot")},
	}}}
	if s.MetricsLogGroup != "" {
		logs["metrics_collected"] = map[string]any{"emf": map[string]any{}}
	}
	b, err := json.MarshalIndent(map[string]any{"logs": logs}, "", "  ")
	if err != nil {
		return "", err
	}
	if strings.Contains(string(b), "CWAGENT") {
		return "", fmt.Errorf("log group %q cannot go in user data", s.LogGroup)
	}
	return string(b), nil
}

func dir(path string) string { return path[:strings.LastIndexByte(path, '/')] }

func validKey(k string) bool {
	if k == "" || k[0] < 'A' || k[0] > 'Z' {
		return false
	}
	for _, r := range k {
		if !(r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_') {
			return false
		}
	}
	return true
}

// validValue accepts what needs no quoting in a systemd environment file
// or a shell word, and CDK tokens (${Token[...]}), which CloudFormation
// replaces at deploy time with names and ARNs of the same alphabet.
func validValue(v string) bool {
	for len(v) > 0 {
		if strings.HasPrefix(v, "${Token[") {
			end := strings.Index(v, "]}")
			if end < 0 || strings.Trim(v[len("${Token["):end], "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._") != "" {
				return false
			}
			v = v[end+2:]
			continue
		}
		r := v[0]
		if !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || strings.IndexByte("_./:+=,@%-", r) >= 0) {
			return false
		}
		v = v[1:]
	}
	return true
}
