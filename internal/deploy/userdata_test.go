package deploy

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func worker() Service {
	return Service{
		Name: "worker",
		Env: map[string]string{
			"SURGE_BACKEND":      "aws",
			"SURGE_INPUT_BUCKET": "${Token[TOKEN.123]}",
			"SURGE_MODEL":        "/opt/surge/models/mobilenetv2-12-int8/model.onnx",
		},
		Files: []ServiceFile{
			{Source: "s3://assets/abc.bin", Path: "/opt/surge/bin/worker", Mode: "0755"},
			{Source: "s3://assets/def.onnx", Path: "/opt/surge/models/mobilenetv2-12-int8/model.onnx", Mode: "0644"},
		},
		Region:       "us-east-1",
		LogGroup:     "surge-instances",
		EndOnFailure: true,
	}
}

func TestRender(t *testing.T) {
	script, err := RenderUserData(worker())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"#!/bin/bash", "set -Eeuo pipefail", `root="${SURGE_INSTANCE_ROOT:-}"`,
		"SURGE_INPUT_BUCKET=${Token[TOKEN.123]}\n",
		"fetch us-east-1 s3://assets/abc.bin /opt/surge/bin/worker 0755\n",
		"retry aws s3 cp", "shutdown -h now", "OnFailure=surge-give-up.service", "StartLimitBurst=5",
		"ExecStart=/usr/bin/systemctl poweroff", "EnvironmentFile=/etc/surge/worker.env",
		"ExecStart=/opt/surge/bin/worker", "StandardOutput=append:/var/log/surge/worker.log",
		`"log_stream_name": "{instance_id}/worker"`, `"file_path": "/var/log/cloud-init-output.log"`,
		"systemctl enable --now surge-worker.service",
	} {
		if !strings.Contains(script, want) {
			t.Errorf("script lacks %q", want)
		}
	}
	// Every path the script writes is under $root, so the emulator can run
	// it without touching this machine's /etc or /opt.
	for _, line := range strings.Split(script, "\n") {
		for _, w := range []string{"> /", "install -d -m 0755 /"} {
			if strings.Contains(line, w) {
				t.Errorf("writes outside $root: %q", line)
			}
		}
	}
	if out, err := exec.Command("bash", "-n", "-c", script).CombinedOutput(); err != nil {
		t.Fatalf("bash -n: %v\n%s", err, out)
	}
	t.Logf("a worker's boot script: %d bytes of EC2's 16384", len(script))
}

func TestWebTierStaysUpOnFailure(t *testing.T) {
	s := worker()
	s.Name, s.EndOnFailure, s.LogGroup = "webtier", false, ""
	script, err := RenderUserData(s)
	if err != nil {
		t.Fatal(err)
	}
	for _, absent := range []string{"shutdown", "poweroff", "OnFailure", "amazon-cloudwatch-agent"} {
		if strings.Contains(script, absent) {
			t.Errorf("web tier script has %q", absent)
		}
	}
	if !strings.Contains(script, "Restart=always") {
		t.Error("web tier does not restart for ever")
	}
}

func TestRefusesUnsafeValues(t *testing.T) {
	for name, mutate := range map[string]func(*Service){
		"space":          func(s *Service) { s.Env["SURGE_MODEL"] = "a b" },
		"command":        func(s *Service) { s.Env["SURGE_MODEL"] = "$(reboot)" },
		"heredoc escape": func(s *Service) { s.Env["SURGE_MODEL"] = "x\nSURGE_ENV\nrm -rf /" },
		"lower key":      func(s *Service) { s.Env["lower"] = "x" },
		"token trick":    func(s *Service) { s.Env["SURGE_MODEL"] = "${Token[$(reboot)]}" },
		"relative path":  func(s *Service) { s.Files[0].Path = "opt/x" },
		"bad mode":       func(s *Service) { s.Files[0].Mode = "rwx" },
		"bad source":     func(s *Service) { s.Files[0].Source = "s3://a/b;reboot" },
		"bad name":       func(s *Service) { s.Name = "../x" },
		"metrics group":  func(s *Service) { s.MetricsLogGroup = "x\nCWAGENT\nreboot" },
		"too long for EC2": func(s *Service) {
			for i := range 200 {
				s.Files = append(s.Files, ServiceFile{Source: "s3://assets/" + strings.Repeat("a", 64), Path: "/opt/surge/f" + strconv.Itoa(i), Mode: "0644"})
			}
		},
	} {
		s := worker()
		mutate(&s)
		if _, err := RenderUserData(s); err == nil {
			t.Errorf("%s: Render accepted it", name)
		}
	}
}

// The script's retry and give-up logic, run by bash with the commands an
// instance would have replaced by recording stand-ins: aws fails a given
// number of times, then copies from a local directory.
func TestRetriesThenGivesUp(t *testing.T) {
	for _, tc := range []struct {
		name      string
		failures  int
		poweredOn bool
	}{
		{"passing failure", 3, true},
		{"failure for good", 100, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root, bin := t.TempDir(), t.TempDir()
			src := t.TempDir()
			os.WriteFile(filepath.Join(src, "abc.bin"), []byte("binary"), 0o644)
			os.WriteFile(filepath.Join(src, "def.onnx"), []byte("model"), 0o644)
			stub := func(name, body string) {
				os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/bash\n"+body+"\n"), 0o755)
			}
			stub("aws", `n=$(cat "$ROOT/.aws-calls" 2>/dev/null || echo 0); echo $((n+1)) > "$ROOT/.aws-calls"
[ "$n" -ge `+strconv.Itoa(tc.failures)+` ] || { echo "AccessDenied" >&2; exit 1; }
src="${@: -2:1}"; cp "`+src+`/${src##*/}" "${@: -1}"`)
			stub("sleep", "")
			stub("systemctl", `echo "$*" >> "$ROOT/.systemctl"`)
			stub("shutdown", `touch "$ROOT/.poweroff"`)
			stub("useradd", "")
			stub("dnf", "exit 1")
			script, err := RenderUserData(worker())
			if err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command("bash", "-c", script)
			cmd.Env = []string{"PATH=" + bin + ":/usr/bin:/bin", RootEnv + "=" + root, "ROOT=" + root}
			out, err := cmd.CombinedOutput()
			_, poweroff := os.Stat(filepath.Join(root, ".poweroff"))
			if tc.poweredOn {
				if err != nil || poweroff == nil {
					t.Fatalf("boot failed: %v\n%s", err, out)
				}
				if b, _ := os.ReadFile(filepath.Join(root, "opt/surge/bin/worker")); string(b) != "binary" {
					t.Errorf("worker binary = %q", b)
				}
				if fi, err := os.Stat(filepath.Join(root, "opt/surge/bin/worker")); err != nil || fi.Mode().Perm() != 0o755 {
					t.Errorf("worker binary mode: %v %v", fi, err)
				}
				if b, _ := os.ReadFile(filepath.Join(root, ".systemctl")); !strings.Contains(string(b), "enable --now surge-worker.service") {
					t.Errorf("service not enabled: %q", b)
				}
				if !strings.Contains(string(out), "attempt 3 of 'aws s3 cp") || !strings.Contains(string(out), "no CloudWatch agent") {
					t.Errorf("output:\n%s", out)
				}
				return
			}
			if err == nil || poweroff != nil {
				t.Fatalf("a boot that cannot fetch its files went on (err %v, poweroff %v)\n%s", err, poweroff, out)
			}
			if b, _ := os.ReadFile(filepath.Join(root, ".aws-calls")); strings.TrimSpace(string(b)) != "6" {
				t.Errorf("aws called %s times, want 6", b)
			}
			if _, err := os.Stat(filepath.Join(root, ".systemctl")); err == nil {
				t.Error("the service was started after a failed boot")
			}
		})
	}
}

// With a metrics log group, the boot configures the agent to listen for
// embedded-metric-format lines and tells the service where to send them
// and which group to name; without one, neither. The script runs in bash
// with a dnf that installs a recording stand-in for the agent's control
// program, and the test reads the files the boot wrote.
func TestMetricsListener(t *testing.T) {
	for _, tc := range []struct {
		name         string
		metricsGroup string
	}{
		{"metrics", "surge-metrics"},
		{"logs only", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root, bin := t.TempDir(), t.TempDir()
			stub := func(name, body string) {
				os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/bash\n"+body+"\n"), 0o755)
			}
			stub("aws", `touch "${@: -1}"`)
			stub("sleep", "")
			stub("systemctl", "")
			stub("useradd", "")
			stub("dnf", `d="$ROOT/opt/aws/amazon-cloudwatch-agent/bin"; mkdir -p "$d"
printf '#!/bin/bash\necho "$*" > "$ROOT/.agent-args"\n' > "$d/amazon-cloudwatch-agent-ctl"; chmod +x "$d/amazon-cloudwatch-agent-ctl"`)
			s := worker()
			s.MetricsLogGroup = tc.metricsGroup
			script, err := RenderUserData(s)
			if err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command("bash", "-c", script)
			cmd.Env = []string{"PATH=" + bin + ":/usr/bin:/bin", RootEnv + "=" + root, "ROOT=" + root}
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("boot failed: %v\n%s", err, out)
			}
			if b, _ := os.ReadFile(filepath.Join(root, ".agent-args")); !strings.Contains(string(b), "-a fetch-config -m ec2 -s -c file:"+root+AgentConfig) {
				t.Errorf("agent started with %q", b)
			}
			raw, err := os.ReadFile(filepath.Join(root, AgentConfig))
			if err != nil {
				t.Fatal(err)
			}
			var cfg struct {
				Logs struct {
					MetricsCollected map[string]map[string]any `json:"metrics_collected"`
					LogsCollected    struct {
						Files struct {
							CollectList []map[string]string `json:"collect_list"`
						} `json:"files"`
					} `json:"logs_collected"`
				} `json:"logs"`
			}
			if err := json.Unmarshal(raw, &cfg); err != nil {
				t.Fatalf("agent configuration: %v\n%s", err, raw)
			}
			if n := len(cfg.Logs.LogsCollected.Files.CollectList); n != 2 {
				t.Errorf("%d log files collected, want the service's and the boot's", n)
			}
			env, _ := os.ReadFile(filepath.Join(root, s.EnvFile()))
			emf, listens := cfg.Logs.MetricsCollected["emf"]
			if tc.metricsGroup == "" {
				if cfg.Logs.MetricsCollected != nil || strings.Contains(string(env), EnvEMF) {
					t.Errorf("no metrics group, yet metrics_collected %v and environment\n%s", cfg.Logs.MetricsCollected, env)
				}
				return
			}
			// An empty section: the agent's default socket, EMFEndpoint.
			if !listens || len(emf) != 0 || len(cfg.Logs.MetricsCollected) != 1 {
				t.Errorf("metrics_collected = %v, want only an empty emf section", cfg.Logs.MetricsCollected)
			}
			for _, want := range []string{"SURGE_EMF=tcp://127.0.0.1:25888\n", "SURGE_EMF_LOG_GROUP=surge-metrics\n", "SURGE_BACKEND=aws\n"} {
				if !strings.Contains(string(env), want) {
					t.Errorf("environment lacks %q:\n%s", want, env)
				}
			}
		})
	}
}

// No agent, no listener: the service is not pointed at one.
func TestNoMetricsWithoutAgent(t *testing.T) {
	s := worker()
	s.LogGroup, s.MetricsLogGroup = "", "surge-metrics"
	script, err := RenderUserData(s)
	if err != nil {
		t.Fatal(err)
	}
	for _, absent := range []string{EnvEMF, "amazon-cloudwatch-agent", "metrics_collected"} {
		if strings.Contains(script, absent) {
			t.Errorf("script has %q", absent)
		}
	}
}

// With Ready, the boot writes a unit that, once the service answers,
// signals CloudFormation SUCCESS for the instance's own logical id (from
// its aws:cloudformation:logical-id tag), and FAILURE when it never
// answers. The boot script and then the unit's program run in bash with
// stand-ins for curl and aws.
func TestReadinessSignal(t *testing.T) {
	for _, tc := range []struct {
		name       string
		unanswered int // health checks that fail first
		status     string
	}{
		{"answers", 3, "SUCCESS"},
		{"never answers", 1000, "FAILURE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root, bin := t.TempDir(), t.TempDir()
			stub := func(name, body string) {
				os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/bash\n"+body+"\n"), 0o755)
			}
			stub("aws", `case "$1 $2" in
"ec2 describe-instances") echo WebInstanceABC ;;
"cloudformation signal-resource") echo "$*" >> "$ROOT/.signals" ;;
*) touch "${@: -1}" ;;
esac`)
			stub("curl", `case "$*" in
*api/token*) echo token ;;
*instance-id*) echo i-0abc ;;
*healthz*) n=$(cat "$ROOT/.health" 2>/dev/null || echo 0); echo $((n+1)) > "$ROOT/.health"; [ "$n" -ge `+strconv.Itoa(tc.unanswered)+` ] ;;
esac`)
			stub("sleep", "")
			stub("systemctl", `echo "$*" >> "$ROOT/.systemctl"`)
			stub("useradd", "")
			stub("dnf", "exit 1")
			s := worker()
			s.Name, s.EndOnFailure = "webtier", false
			s.Ready = &Readiness{Stack: "surge-1225754101", Path: "/healthz", PortEnv: "SURGE_PORT", Wait: time.Minute}
			script, err := RenderUserData(s)
			if err != nil {
				t.Fatal(err)
			}
			env := []string{"PATH=" + bin + ":/usr/bin:/bin", RootEnv + "=" + root, "ROOT=" + root}
			boot := exec.Command("bash", "-c", script)
			boot.Env = env
			if out, err := boot.CombinedOutput(); err != nil {
				t.Fatalf("boot: %v\n%s", err, out)
			}
			if b, _ := os.ReadFile(filepath.Join(root, ".systemctl")); !strings.Contains(string(b), "enable --now surge-webtier.service surge-ready.service") {
				t.Errorf("units enabled: %q", b)
			}
			unit, err := os.ReadFile(filepath.Join(root, "etc/systemd/system/surge-ready.service"))
			if err != nil || !strings.Contains(string(unit), "EnvironmentFile=/etc/surge/webtier.env") || !strings.Contains(string(unit), "After=surge-webtier.service") {
				t.Fatalf("the readiness unit: %v\n%s", err, unit)
			}
			ready := exec.Command(filepath.Join(root, "opt/surge/bin/surge-ready"))
			ready.Env = append(env, "SURGE_PORT=8000")
			out, err := ready.CombinedOutput()
			if err != nil {
				t.Fatalf("the readiness program: %v\n%s", err, out)
			}
			signals, _ := os.ReadFile(filepath.Join(root, ".signals"))
			want := "cloudformation signal-resource --region us-east-1 --stack-name surge-1225754101 --logical-resource-id WebInstanceABC --unique-id i-0abc --status " + tc.status + "\n"
			if string(signals) != want {
				t.Errorf("signals:\n%s\nwant\n%s", signals, want)
			}
			if b, _ := os.ReadFile(filepath.Join(root, ".health")); tc.status == "FAILURE" && strings.TrimSpace(string(b)) != "12" {
				t.Errorf("the service was asked %s times in a minute, want 12 (every 5 s)", b)
			}
		})
	}
}
