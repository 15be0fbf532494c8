package emulate

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Stand-ins for the operating-system tools a boot script calls that
// cannot run here (systemd, dnf, shutdown, the CloudWatch agent): each
// records what it was asked in $SURGE_EMULATOR_RUN, and the emulator acts
// on the record. sleep is real, scaled by the emulator's time scale.
// Everything else a script runs is this machine's own (bash, install,
// chmod, mv, and the real aws CLI, which reaches the emulated endpoint).
var shims = map[string]string{
	"systemctl": `echo "$*" >> "$SURGE_EMULATOR_RUN/systemctl"
case "$1" in poweroff|halt|reboot) touch "$SURGE_EMULATOR_RUN/poweroff" ;; esac`,
	"shutdown": `touch "$SURGE_EMULATOR_RUN/poweroff"`,
	"poweroff": `touch "$SURGE_EMULATOR_RUN/poweroff"`,
	"useradd":  `exit 0`,
	// dnf "installs" the CloudWatch agent as the stand-in below; other
	// packages are not emulated.
	"dnf": `case " $* " in
*" amazon-cloudwatch-agent "*)
  d="$SURGE_INSTANCE_ROOT/opt/aws/amazon-cloudwatch-agent/bin"
  mkdir -p "$d" && cp "$SURGE_EMULATOR_SHIMS/.cwagent-ctl" "$d/amazon-cloudwatch-agent-ctl" ;;
*) echo "dnf (emulator stand-in): $* is not emulated" >&2; exit 1 ;;
esac`,
	// The agent's control program: records the configuration it was
	// given; the emulator ships the files it names.
	".cwagent-ctl": `while [ $# -gt 0 ]; do
  case "$1" in -c) echo "${2#file:}" > "$SURGE_EMULATOR_RUN/cwagent"; shift ;; esac
  shift
done`,
	"sleep": `exec /bin/sleep "$(awk -v d="${1%s}" -v k="$SURGE_EMULATOR_TIME_SCALE" 'BEGIN { printf "%.3f", d * k }')"`,
}

// writeShims puts the stand-ins in dir.
func writeShims(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, body := range shims {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/bash\n# Emulator stand-in (internal/emulate).\n"+body+"\n"), 0o755); err != nil {
			return err
		}
	}
	return nil
}

// awsCLIDir is the directory of the real aws CLI, past any pyenv shim,
// which would not find its Python with an instance's HOME.
func awsCLIDir() (string, error) {
	out, err := exec.Command("python3", "-c", "import awscli, os, sys; print(os.path.dirname(sys.executable))").Output()
	if err != nil {
		return "", fmt.Errorf("the aws CLI is not installed for python3 (pip install awscli): the emulated instances run it at boot")
	}
	dir := strings.TrimSpace(string(out))
	if _, err := os.Stat(filepath.Join(dir, "aws")); err != nil {
		return "", fmt.Errorf("the aws CLI is not beside %s: %w", dir, err)
	}
	return dir, nil
}
