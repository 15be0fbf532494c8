package main

import (
	"strings"
	"testing"
)

// A malformed setting stops the web tier before it opens anything, and
// says which variable to fix.
func TestRefusesMalformedEnvironment(t *testing.T) {
	for key, value := range map[string]string{
		"SURGE_PORT":          "80a",
		"SURGE_DRAIN_TIMEOUT": "60",
		"SURGE_REUSE_ANSWERS": "sometimes",
	} {
		env := map[string]string{key: value}
		// Were the variable ignored, these flags would fail the run at once.
		err := run([]string{"-backend", "none"}, func(k string) string { return env[k] })
		if err == nil || !strings.Contains(err.Error(), key+"=") {
			t.Errorf("%s=%s: %v", key, value, err)
		}
	}
}
