// Package userdata writes the boot script of a Surge instance (the worker
// in the launch template, the web tier), and reads a service's
// configuration back out of one. The CDK stack renders it; the emulator
// parses the launch template's copy so that emulated instances are
// configured exactly as real ones.
package userdata

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
)

const envMarker = "SURGE_ENV"

// Service is one Surge binary run under systemd on an instance.
type Service struct {
	// Name is the binary's name: it is installed at /opt/surge/bin/<Name>
	// and runs as the unit surge-<Name>.
	Name string
	// Env configures it (SURGE_BACKEND, SURGE_PREFIX, SURGE_MODEL...).
	Env map[string]string
	// Install are shell commands that put the binary and the files Env
	// points at in place.
	Install []string
}

// EnvFile is where the script writes the service's environment.
func (s Service) EnvFile() string { return "/etc/surge/" + s.Name + ".env" }

// Render returns the boot script: write the environment, install, then run
// the service under systemd as an unprivileged user, restarted if it fails
// and stopped with SIGTERM (a drain) when the instance shuts down.
func Render(s Service) (string, error) {
	if !validKey(strings.ToUpper(s.Name)) {
		return "", fmt.Errorf("service name %q", s.Name)
	}
	var b strings.Builder
	b.WriteString("#!/bin/bash\nset -euo pipefail\n")
	b.WriteString("install -d -m 0755 /etc/surge /opt/surge/bin\n")
	fmt.Fprintf(&b, "cat > %s <<'%s'\n", s.EnvFile(), envMarker)
	for _, k := range slices.Sorted(maps.Keys(s.Env)) {
		v := s.Env[k]
		// Values go into a systemd EnvironmentFile unquoted; refuse what
		// would need quoting rather than get it subtly wrong.
		if !validKey(k) || !validValue(v) {
			return "", fmt.Errorf("environment entry %s=%q cannot go in user data", k, v)
		}
		fmt.Fprintf(&b, "%s=%s\n", k, v)
	}
	fmt.Fprintf(&b, "%s\n", envMarker)
	for _, cmd := range s.Install {
		b.WriteString(cmd + "\n")
	}
	fmt.Fprintf(&b, `useradd --system --no-create-home --shell /usr/sbin/nologin surge || true
cat > /etc/systemd/system/surge-%[1]s.service <<'UNIT'
[Unit]
Description=Surge %[1]s
After=network-online.target
Wants=network-online.target

[Service]
User=surge
EnvironmentFile=%[2]s
Environment=SURGE_CACHE=/var/cache/surge
CacheDirectory=surge
ExecStart=/opt/surge/bin/%[1]s
Restart=on-failure
RestartSec=2
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
systemctl enable --now surge-%[1]s.service
`, s.Name, s.EnvFile())
	return b.String(), nil
}

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

func validValue(v string) bool {
	for _, r := range v {
		if !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || strings.ContainsRune("_./:+=,@%-", r)) {
			return false
		}
	}
	return true
}

// ParseEnv reads the service environment out of a script made by Render.
func ParseEnv(script string) (map[string]string, error) {
	_, body, ok := strings.Cut(script, "<<'"+envMarker+"'\n")
	if !ok {
		return nil, errors.New("user data has no service environment")
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
	return nil, errors.New("user data's service environment is not terminated")
}
