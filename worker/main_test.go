package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// A malformed setting stops the worker before it loads a model or opens
// a queue, and says which variable to fix.
func TestRefusesMalformedEnvironment(t *testing.T) {
	for key, value := range map[string]string{
		"SURGE_CONCURRENCY":   "two",
		"SURGE_IDLE_SHUTDOWN": "5",
		"SURGE_THREADS":       "1.5",
	} {
		env := map[string]string{key: value}
		// Were the variable ignored, these flags would fail the run at once.
		err := run([]string{"-backend", "none", "-ort-lib", "/nonexistent/libonnxruntime.so.1"}, func(k string) string { return env[k] })
		if err == nil || !strings.Contains(err.Error(), key+"=") {
			t.Errorf("%s=%s: %v", key, value, err)
		}
	}
}

// With -model-command the worker starts the model process and loads no
// ONNX Runtime: a runtime path that does not exist is never opened, and
// the run gets as far as the backend.
func TestModelCommandLoadsNoRuntime(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is not installed")
	}
	script, err := filepath.Abs(filepath.Join("..", "testdata", "models", "sizes.py"))
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"SURGE_MODEL_COMMAND": python + " " + script}
	err = run([]string{"-backend", "none", "-ort-lib", "/nonexistent/libonnxruntime.so.1"}, func(k string) string { return env[k] })
	if err == nil || !strings.Contains(err.Error(), `unknown backend "none"`) {
		t.Fatalf("got %v, want the backend refused after the model started", err)
	}
}
