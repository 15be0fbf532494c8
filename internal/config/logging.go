// This file makes the structured (JSON) loggers every binary uses.

package config

import (
	"io"
	"log/slog"
	"os"
)

// Logger logs JSON to stderr at the level in $SURGE_LOG_LEVEL.
func Logger() *slog.Logger { return JSONLogger(os.Stderr) }

// JSONLogger logs to w at the level in $SURGE_LOG_LEVEL (default info).
// Durations read "5.4ms" rather than nanosecond integers.
func JSONLogger(w io.Writer) *slog.Logger {
	var level slog.Level
	setting := os.Getenv("SURGE_LOG_LEVEL")
	bad := setting != "" && level.UnmarshalText([]byte(setting)) != nil
	if bad {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Value.Kind() == slog.KindDuration {
				a.Value = slog.StringValue(a.Value.Duration().String())
			}
			return a
		},
	}))
	if bad {
		// A logger has no one to return an error to; it says so instead.
		log.Warn("SURGE_LOG_LEVEL is not a level (debug, info, warn, error); logging at info", "SURGE_LOG_LEVEL", setting)
	}
	return log
}
