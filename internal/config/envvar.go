// This file reads settings from the environment with defaults, so
// that every binary is configured the same way by flags on a laptop and by
// the environment in user data, systemd units and Lambda.

package config

import (
	"os"
	"strconv"
	"time"
)

// EnvString returns $key, or def when it is unset or empty.
func EnvString(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// EnvInt is String for integers; a malformed value falls back to def.
func EnvInt(key string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(key)); err == nil {
		return n
	}
	return def
}

// EnvDuration is String for durations such as "30s".
func EnvDuration(key string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(key)); err == nil {
		return d
	}
	return def
}

// EnvBool is String for booleans such as "true" or "0".
func EnvBool(key string, def bool) bool {
	if b, err := strconv.ParseBool(os.Getenv(key)); err == nil {
		return b
	}
	return def
}
