// This file makes the structured (JSON) loggers every binary uses.

package config

import (
	"io"
	"log/slog"
	"os"
)

// Logger logs JSON to stderr at the level in $SURGE_LOG_LEVEL.
func Logger() *slog.Logger { return JSONLogger(os.Stderr) }

// JSONLogger logs to w at the level in $SURGE_LOG_LEVEL. Durations read "5.4ms"
// rather than nanosecond integers.
func JSONLogger(w io.Writer) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(EnvString("SURGE_LOG_LEVEL", "info")))
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Value.Kind() == slog.KindDuration {
				a.Value = slog.StringValue(a.Value.Duration().String())
			}
			return a
		},
	}))
}
