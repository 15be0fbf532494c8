package main

import (
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
