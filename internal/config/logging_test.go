package config

import (
	"bytes"
	"strings"
	"testing"
)

func TestLogLevel(t *testing.T) {
	for _, c := range []struct {
		setting     string
		debug, warn bool // a debug line is written; a warning names the setting
	}{
		{"", false, false},
		{"debug", true, false},
		{"WARN", false, false},
		{"verbose", false, true},
	} {
		t.Setenv("SURGE_LOG_LEVEL", c.setting)
		var out bytes.Buffer
		log := JSONLogger(&out)
		log.Debug("a debug line")
		if got := strings.Contains(out.String(), "a debug line"); got != c.debug {
			t.Errorf("SURGE_LOG_LEVEL=%q: debug line written %v, want %v", c.setting, got, c.debug)
		}
		if got := strings.Contains(out.String(), `"SURGE_LOG_LEVEL":"verbose"`); got != c.warn {
			t.Errorf("SURGE_LOG_LEVEL=%q: warned %v, want %v:\n%s", c.setting, got, c.warn, out.String())
		}
	}
}
