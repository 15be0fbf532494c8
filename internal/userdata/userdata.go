// Package userdata writes the boot script of a worker instance, and reads
// the worker's configuration back out of one. The CDK stack renders it
// into the launch template; the emulator parses the launch template's copy
// so that emulated instances are configured exactly as real ones.
package userdata

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
)

// EnvFile is where the script writes the worker's environment; the
// systemd unit reads it.
const EnvFile = "/etc/surge/worker.env"

const envMarker = "SURGE_WORKER_ENV"

// Worker is what a worker instance needs at boot.
type Worker struct {
	// Env configures the worker binary (SURGE_BACKEND, SURGE_PREFIX,
	// SURGE_MODEL...).
	Env map[string]string
	// Install are shell commands that put the worker binary at
	// /opt/surge/bin/worker and the files Env points at in place.
	Install []string
}

var safeValue = regexp.MustCompile(`^[A-Za-z0-9_./:+=,@%-]*$`)
var safeKey = regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`)

// Render returns the boot script: write the environment, install, then run
// the worker under systemd, restarted if it fails and stopped (so drained)
// when the instance shuts down.
func Render(w Worker) (string, error) {
	var b strings.Builder
	b.WriteString("#!/bin/bash\nset -euo pipefail\n")
	b.WriteString("install -d -m 0755 /etc/surge /opt/surge/bin\n")
	fmt.Fprintf(&b, "cat > %s <<'%s'\n", EnvFile, envMarker)
	for _, k := range slices.Sorted(maps.Keys(w.Env)) {
		v := w.Env[k]
		// Values go into a systemd EnvironmentFile unquoted; refuse what
		// would need quoting rather than get it subtly wrong.
		if !safeKey.MatchString(k) || !safeValue.MatchString(v) {
			return "", fmt.Errorf("environment entry %s=%q cannot go in user data", k, v)
		}
		fmt.Fprintf(&b, "%s=%s\n", k, v)
	}
	fmt.Fprintf(&b, "%s\n", envMarker)
	for _, cmd := range w.Install {
		b.WriteString(cmd + "\n")
	}
	b.WriteString(`useradd --system --no-create-home --shell /usr/sbin/nologin surge || true
cat > /etc/systemd/system/surge-worker.service <<'UNIT'
[Unit]
Description=Surge worker
After=network-online.target
Wants=network-online.target

[Service]
User=surge
EnvironmentFile=` + EnvFile + `
ExecStart=/opt/surge/bin/worker
Restart=on-failure
RestartSec=2
# A stop (instance shutdown) is a drain: finish the held request.
KillSignal=SIGTERM
TimeoutStopSec=120
NoNewPrivileges=true
ProtectSystem=strict
ProtectHome=true
PrivateTmp=true

[Install]
WantedBy=multi-user.target
UNIT
systemctl daemon-reload
systemctl enable --now surge-worker.service
`)
	return b.String(), nil
}

// ParseEnv reads the worker environment out of a script made by Render.
func ParseEnv(script string) (map[string]string, error) {
	_, body, ok := strings.Cut(script, "<<'"+envMarker+"'\n")
	if !ok {
		return nil, errors.New("user data has no worker environment")
	}
	env := map[string]string{}
	for line := range strings.Lines(body) {
		line = strings.TrimSuffix(line, "\n")
		if line == envMarker {
			return env, nil
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("user data line %q is not KEY=value", line)
		}
		env[k] = v
	}
	return nil, errors.New("user data's worker environment is not terminated")
}
