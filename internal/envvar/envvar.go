// Package envvar reads settings from the environment with defaults, so
// that every binary is configured the same way by flags on a laptop and by
// the environment in user data, systemd units and Lambda.
package envvar

import (
	"os"
	"strconv"
	"time"
)

// String returns $key, or def when it is unset or empty.
func String(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// Int is String for integers; a malformed value falls back to def.
func Int(key string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(key)); err == nil {
		return n
	}
	return def
}

// Duration is String for durations such as "30s".
func Duration(key string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(key)); err == nil {
		return d
	}
	return def
}

// Bool is String for booleans such as "true" or "0".
func Bool(key string, def bool) bool {
	if b, err := strconv.ParseBool(os.Getenv(key)); err == nil {
		return b
	}
	return def
}
