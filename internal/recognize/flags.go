package recognize

import (
	"flag"

	"github.com/surgeml/surge/internal/assets"
	"github.com/surgeml/surge/internal/config"
)

// Flags registers the flags that choose and find the recognition
// model and the ONNX Runtime library.
func Flags(fs *flag.FlagSet) *Config {
	c := &Config{}
	fs.StringVar(&c.Model.Spec, "model", config.EnvString("SURGE_MODEL", assets.DefaultModel), "model name, folder, .onnx file, or http(s) URL of a .tar.gz (env SURGE_MODEL)")
	fs.Var(config.NewPathList(&c.Model.Mirrors, "SURGE_MODELS"), "models", "colon-separated directories of model folders (env SURGE_MODELS)")
	fs.StringVar(&c.Model.SHA256, "model-sha256", config.EnvString("SURGE_MODEL_SHA256", ""), "SHA-256 of a model URL's archive or of a model path's .onnx (env SURGE_MODEL_SHA256)")
	fs.StringVar(&c.Gallery, "gallery", config.EnvString("SURGE_GALLERY", ""), "recognise by nearest neighbour in this gallery file instead of classifying (env SURGE_GALLERY)")
	fs.StringVar(&c.RuntimeLib, "ort-lib", config.EnvString("SURGE_ORT_LIB", ""), "path of libonnxruntime.so (env SURGE_ORT_LIB)")
	fs.Var(config.NewPathList(&c.RuntimeMirrors, "SURGE_ORT_MIRRORS"), "ort-mirrors", "colon-separated directories laid out like the cache (env SURGE_ORT_MIRRORS)")
	fs.StringVar(&c.Cache, "cache", config.EnvString("SURGE_CACHE", config.DefaultCache()), "download cache (env SURGE_CACHE)")
	fs.IntVar(&c.Threads, "threads", config.EnvInt("SURGE_THREADS", 1), "intra-op threads per inference (env SURGE_THREADS)")
	return c
}
