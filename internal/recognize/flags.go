package recognize

import (
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/surgeml/surge/internal/assets"
)

// Flags registers the flags that choose and find the model, the gallery
// and the ONNX Runtime library, and threads, and returns the Config they
// fill.
func Flags(fs *flag.FlagSet) *Config {
	c := &Config{}
	fs.StringVar(&c.Model.Spec, "model", assets.DefaultModel, "model name, folder, .onnx file, or http(s) URL of a .tar.gz")
	fs.Var(pathList{&c.Model.Mirrors}, "models", "colon-separated directories of model folders")
	fs.StringVar(&c.Model.SHA256, "model-sha256", "", "SHA-256 of a model URL's archive or of a model path's .onnx")
	fs.StringVar(&c.Gallery, "gallery", "", "recognise by nearest neighbour in this gallery file instead of classifying")
	fs.StringVar(&c.RuntimeLib, "ort-lib", "", "path of libonnxruntime.so")
	fs.Var(pathList{&c.RuntimeMirrors}, "ort-mirrors", "colon-separated directories laid out like the cache")
	fs.StringVar(&c.Cache, "cache", DefaultCache(), "download cache")
	fs.IntVar(&c.Threads, "threads", 1, "intra-op threads per inference")
	fs.StringVar(&c.Command, "model-command", "", "run this model process instead of an ONNX model: a command and its arguments, split at spaces, no quoting (docs/models.md)")
	fs.DurationVar(&c.StartTimeout, "model-start-timeout", DefaultStartTimeout, "longest wait for a model process's ready line")
	fs.DurationVar(&c.RequestTimeout, "model-timeout", DefaultRequestTimeout, "longest wait for a model process's answer before it is restarted")
	return c
}

// Args are the flags of Flags that give another process c, every one of
// them, so that its environment cannot change what it loads.
func (c Config) Args() []string {
	return []string{
		"-model", c.Model.Spec,
		"-models", pathList{&c.Model.Mirrors}.String(),
		"-model-sha256", c.Model.SHA256,
		"-gallery", c.Gallery,
		"-ort-lib", c.RuntimeLib,
		"-ort-mirrors", pathList{&c.RuntimeMirrors}.String(),
		"-cache", c.Cache,
		"-threads", strconv.Itoa(c.Threads),
		"-model-command", c.Command,
		"-model-start-timeout", c.StartTimeout.String(),
		"-model-timeout", c.RequestTimeout.String(),
	}
}

// External is the external model c sets with -model-command, run as
// processes processes; ok is false when c sets none.
func (c Config) External(processes int) (cfg ExternalConfig, ok bool) {
	argv := strings.Fields(c.Command)
	return ExternalConfig{Command: argv, Processes: processes, StartTimeout: c.StartTimeout, RequestTimeout: c.RequestTimeout}, len(argv) > 0
}

// pathList is a colon-separated list of directories, like $PATH.
type pathList struct{ dst *[]string }

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

// DefaultCache is where downloads are kept when -cache (SURGE_CACHE) is
// not given.
func DefaultCache() string {
	if dir, err := os.UserCacheDir(); err == nil {
		return filepath.Join(dir, "surge")
	}
	return ".cache"
}
