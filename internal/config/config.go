// Package config registers the command-line flags the binaries share.
// Every flag defaults to an environment variable, so the same binaries are
// configured by flags on a laptop and by the environment in user data,
// systemd units and Lambda.
package config

import (
	"flag"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/surgeml/surge/internal/assets"
	"github.com/surgeml/surge/internal/backend"
	"github.com/surgeml/surge/internal/recognize"
)

// Env returns $key, or def when it is unset or empty.
func Env(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// EnvInt is Env for integers; a malformed value falls back to def.
func EnvInt(key string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(key)); err == nil {
		return n
	}
	return def
}

// EnvDuration is Env for durations such as "30s".
func EnvDuration(key string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(key)); err == nil {
		return d
	}
	return def
}

// BackendFlags registers the backend selection flags.
func BackendFlags(fs *flag.FlagSet) *backend.Config {
	c := &backend.Config{}
	fs.StringVar(&c.Kind, "backend", Env("SURGE_BACKEND", "local"), "queues and buckets to use: local (embedded) or aws (env SURGE_BACKEND)")
	fs.StringVar(&c.Prefix, "prefix", Env("SURGE_PREFIX", "surge"), "name prefix of queues and buckets (env SURGE_PREFIX)")
	fs.StringVar(&c.DataDir, "data", Env("SURGE_DATA", ".data"), "local backend: directory for queues, buckets and fleet state (env SURGE_DATA)")
	fs.DurationVar(&c.Visibility, "visibility", EnvDuration("SURGE_VISIBILITY", 30*time.Second), "local backend: request visibility timeout (env SURGE_VISIBILITY)")
	fs.IntVar(&c.MaxReceives, "max-receives", EnvInt("SURGE_MAX_RECEIVES", 5), "local backend: deliveries before a request is dead-lettered (env SURGE_MAX_RECEIVES)")
	return c
}

// ModelFlags registers the flags that choose and find the recognition
// model and the ONNX Runtime library.
func ModelFlags(fs *flag.FlagSet) *recognize.Config {
	c := &recognize.Config{}
	fs.StringVar(&c.Model.Spec, "model", Env("SURGE_MODEL", assets.DefaultModel), "model name, folder, .onnx file, or http(s) URL of a .tar.gz (env SURGE_MODEL)")
	fs.Var(newPathList(&c.Model.Mirrors, "SURGE_MODELS"), "models", "colon-separated directories of model folders (env SURGE_MODELS)")
	fs.StringVar(&c.Model.SHA256, "model-sha256", Env("SURGE_MODEL_SHA256", ""), "SHA-256 of a model URL's archive or of a model path's .onnx (env SURGE_MODEL_SHA256)")
	fs.StringVar(&c.Gallery, "gallery", Env("SURGE_GALLERY", ""), "recognise by nearest neighbour in this gallery file instead of classifying (env SURGE_GALLERY)")
	fs.StringVar(&c.RuntimeLib, "ort-lib", Env("SURGE_ORT_LIB", ""), "path of libonnxruntime.so (env SURGE_ORT_LIB)")
	fs.Var(newPathList(&c.RuntimeMirrors, "SURGE_ORT_MIRRORS"), "ort-mirrors", "colon-separated directories laid out like the cache (env SURGE_ORT_MIRRORS)")
	fs.StringVar(&c.Cache, "cache", Env("SURGE_CACHE", defaultCache()), "download cache (env SURGE_CACHE)")
	fs.IntVar(&c.Threads, "threads", EnvInt("SURGE_THREADS", 1), "intra-op threads per inference (env SURGE_THREADS)")
	return c
}

// pathList is a colon-separated list of directories, like $PATH.
type pathList struct{ dst *[]string }

func newPathList(dst *[]string, env string) pathList {
	l := pathList{dst}
	l.Set(os.Getenv(env))
	return l
}

func (l pathList) String() string {
	if l.dst == nil {
		return ""
	}
	return strings.Join(*l.dst, ":")
}

func (l pathList) Set(s string) error {
	*l.dst = nil
	for _, p := range strings.Split(s, ":") {
		if p != "" {
			*l.dst = append(*l.dst, p)
		}
	}
	return nil
}

func defaultCache() string {
	if dir, err := os.UserCacheDir(); err == nil {
		return filepath.Join(dir, "surge")
	}
	return ".cache"
}

// Logger writes JSON logs to stderr at the level in $SURGE_LOG_LEVEL.
func Logger() *slog.Logger { return JSONLogger(os.Stderr) }

// JSONLogger writes JSON logs to w at the level in $SURGE_LOG_LEVEL.
// Durations read "5.4ms" rather than nanosecond integers.
func JSONLogger(w io.Writer) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(Env("SURGE_LOG_LEVEL", "info")))
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
