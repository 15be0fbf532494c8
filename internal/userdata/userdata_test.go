package userdata

import (
	"maps"
	"strings"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	env := map[string]string{
		"SURGE_BACKEND":       "aws",
		"SURGE_PREFIX":        "surge",
		"SURGE_MODEL":         "/opt/surge/models/mobilenetv2-12-int8/model.onnx",
		"SURGE_IDLE_SHUTDOWN": "30s",
	}
	script, err := Render(Service{Name: "worker", Env: env, Install: []string{"aws s3 cp s3://bucket/worker /opt/surge/bin/worker"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"#!/bin/bash", "systemctl enable --now surge-worker.service", "EnvironmentFile=/etc/surge/worker.env", "ExecStart=/opt/surge/bin/worker", "aws s3 cp"} {
		if !strings.Contains(script, want) {
			t.Errorf("script lacks %q", want)
		}
	}
	got, err := ParseEnv(script)
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(got, env) {
		t.Fatalf("ParseEnv = %v, want %v", got, env)
	}
	if got, err := ParseEnv(mustRender(t, nil)); err != nil || len(got) != 0 {
		t.Fatalf("empty environment: %v, %v", got, err)
	}
}

func mustRender(t *testing.T, env map[string]string) string {
	s, err := Render(Service{Name: "worker", Env: env})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRefusesUnsafeValues(t *testing.T) {
	for _, env := range []map[string]string{
		{"SURGE_MODEL": "a b"},
		{"SURGE_MODEL": "$(reboot)"},
		{"SURGE_MODEL": "x\nSURGE_ENV\nrm -rf /"},
		{"lower": "x"},
	} {
		if _, err := Render(Service{Name: "worker", Env: env}); err == nil {
			t.Errorf("Render accepted %v", env)
		}
	}
	for _, bad := range []string{"#!/bin/bash\n", "cat <<'SURGE_ENV'\nA=1\n"} {
		if _, err := ParseEnv(bad); err == nil {
			t.Errorf("ParseEnv accepted %q", bad)
		}
	}
}
