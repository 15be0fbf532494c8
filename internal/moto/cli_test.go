package moto

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// aws runs the aws CLI against p, with nothing from the user's own
// configuration.
func awsCLI(t *testing.T, p *Proxy, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("aws", append([]string{"--endpoint-url", p.URL(), "--output", "json"}, args...)...)
	home := t.TempDir()
	cmd.Env = []string{
		"HOME=" + home, "PATH=" + lookPath(t),
		"AWS_ACCESS_KEY_ID=cli", "AWS_SECRET_ACCESS_KEY=cli", "AWS_DEFAULT_REGION=" + region,
		"AWS_CONFIG_FILE=" + home + "/config", "AWS_SHARED_CREDENTIALS_FILE=" + home + "/credentials",
		"AWS_MAX_ATTEMPTS=1", "AWS_EC2_METADATA_DISABLED=true",
	}
	out, err := cmd.Output()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out) + string(ee.Stderr), err
	}
	return string(out), err
}

func lookPath(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("aws")
	if err != nil {
		t.Skip("the aws CLI is not installed")
	}
	return path[:strings.LastIndex(path, "/")] + ":/usr/bin:/bin"
}

// TestAWSCLIParsesRewrittenAnswers: the instances' boot scripts use the
// aws CLI (v1, botocore), which must read the proxy's rewritten XML and
// its errors as it reads AWS's.
func TestAWSCLIParsesRewrittenAnswers(t *testing.T) {
	p := start(t, ProxyConfig{PendingFor: time.Hour, VCPUQuota: 4})
	run := func() string {
		t.Helper()
		out, err := awsCLI(t, p, "ec2", "run-instances", "--image-id", "ami-12345678", "--instance-type", "t3.small", "--client-token", "cli-1")
		if err != nil {
			t.Fatalf("run-instances: %v: %s", err, out)
		}
		var answer struct{ Instances []struct{ InstanceId string } }
		if err := json.Unmarshal([]byte(out), &answer); err != nil || len(answer.Instances) != 1 {
			t.Fatalf("run-instances printed %s", out)
		}
		return answer.Instances[0].InstanceId
	}
	id := run()
	if again := run(); again != id {
		t.Errorf("the CLI's repeat launched %s, want %s", again, id)
	}
	out, err := awsCLI(t, p, "ec2", "describe-instances", "--filters", "Name=instance-state-name,Values=pending")
	if err != nil {
		t.Fatalf("describe-instances: %v: %s", err, out)
	}
	var described struct {
		Reservations []struct {
			Instances []struct {
				InstanceId string
				State      struct {
					Code int
					Name string
				}
			}
		}
	}
	if err := json.Unmarshal([]byte(out), &described); err != nil {
		t.Fatal(err)
	}
	if len(described.Reservations) != 1 || len(described.Reservations[0].Instances) != 1 {
		t.Fatalf("describe-instances printed %s", out)
	}
	if in := described.Reservations[0].Instances[0]; in.InstanceId != id || in.State.Name != "pending" || in.State.Code != 0 {
		t.Errorf("the CLI read %+v", in)
	}
	out, err = awsCLI(t, p, "ec2", "run-instances", "--image-id", "ami-12345678", "--instance-type", "t3.medium", "--count", "2")
	if err == nil || !strings.Contains(out, "(VcpuLimitExceeded)") || !strings.Contains(out, "current vCPU limit of 4") {
		t.Errorf("over the quota the CLI printed %q (%v)", out, err)
	}
}
