// This file registers the command-line flags the binaries share.
// Every flag defaults to an environment variable (see envvar).

package config

import (
	"flag"
	"os"
	"path/filepath"
	"strings"

	"github.com/surgeml/surge/events"
	"github.com/surgeml/surge/internal/assets"
	"github.com/surgeml/surge/internal/recognize"
)

// BackendFlags registers the backend selection flags.
func BackendFlags(fs *flag.FlagSet) *Backend {
	c := &Backend{}
	fs.StringVar(&c.Kind, "backend", EnvString("SURGE_BACKEND", "local"), "queues and buckets to use: local (embedded) or aws (env SURGE_BACKEND)")
	fs.StringVar(&c.Prefix, "prefix", EnvString("SURGE_PREFIX", "surge"), "name prefix of queues and buckets (env SURGE_PREFIX)")
	fs.StringVar(&c.InputBucket, "input-bucket", EnvString("SURGE_INPUT_BUCKET", ""), "aws backend: input bucket, if not <prefix>-in-bucket (env SURGE_INPUT_BUCKET)")
	fs.StringVar(&c.OutputBucket, "output-bucket", EnvString("SURGE_OUTPUT_BUCKET", ""), "aws backend: output bucket, if not <prefix>-out-bucket (env SURGE_OUTPUT_BUCKET)")
	fs.StringVar(&c.Table, "table", EnvString("SURGE_TABLE", ""), "aws backend: results table, if not <prefix>-dynamoDB (env SURGE_TABLE)")
	fs.StringVar(&c.DataDir, "data", EnvString("SURGE_DATA", ".data"), "local backend: directory for queues, buckets and fleet state (env SURGE_DATA)")
	fs.DurationVar(&c.Visibility, "visibility", EnvDuration("SURGE_VISIBILITY", events.RequestVisibility), "local backend: request visibility timeout (env SURGE_VISIBILITY)")
	fs.IntVar(&c.MaxReceives, "max-receives", EnvInt("SURGE_MAX_RECEIVES", events.MaxReceives), "local backend: deliveries before a request is dead-lettered (env SURGE_MAX_RECEIVES)")
	return c
}

// ModelFlags registers the flags that choose and find the recognition
// model and the ONNX Runtime library.
func ModelFlags(fs *flag.FlagSet) *recognize.Config {
	c := &recognize.Config{}
	fs.StringVar(&c.Model.Spec, "model", EnvString("SURGE_MODEL", assets.DefaultModel), "model name, folder, .onnx file, or http(s) URL of a .tar.gz (env SURGE_MODEL)")
	fs.Var(newPathList(&c.Model.Mirrors, "SURGE_MODELS"), "models", "colon-separated directories of model folders (env SURGE_MODELS)")
	fs.StringVar(&c.Model.SHA256, "model-sha256", EnvString("SURGE_MODEL_SHA256", ""), "SHA-256 of a model URL's archive or of a model path's .onnx (env SURGE_MODEL_SHA256)")
	fs.StringVar(&c.Gallery, "gallery", EnvString("SURGE_GALLERY", ""), "recognise by nearest neighbour in this gallery file instead of classifying (env SURGE_GALLERY)")
	fs.StringVar(&c.RuntimeLib, "ort-lib", EnvString("SURGE_ORT_LIB", ""), "path of libonnxruntime.so (env SURGE_ORT_LIB)")
	fs.Var(newPathList(&c.RuntimeMirrors, "SURGE_ORT_MIRRORS"), "ort-mirrors", "colon-separated directories laid out like the cache (env SURGE_ORT_MIRRORS)")
	fs.StringVar(&c.Cache, "cache", EnvString("SURGE_CACHE", defaultCache()), "download cache (env SURGE_CACHE)")
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
