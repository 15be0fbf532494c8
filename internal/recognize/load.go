package recognize

import (
	"context"
	"fmt"
	"image"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/surgeml/surge/internal/assets"
	"github.com/surgeml/surge/internal/ort"
)

// Recognizer labels a decoded image; Classifier and GalleryRecognizer are
// both one.
type Recognizer interface {
	Name() string
	Recognize(img image.Image) (label string, score float64, err error)
}

// Config chooses a model, optionally a gallery, and where to find the
// files.
type Config struct {
	Model          assets.ModelConfig
	Gallery        string // gallery file; empty to classify
	RuntimeLib     string // explicit ONNX Runtime library
	RuntimeMirrors []string
	Cache          string // downloads (runtime, model archives)
	Threads        int    // intra-op threads per inference
	// Command, when set, is a model process to run instead of an ONNX
	// model (see Config.External), with its timeouts.
	Command                      string
	StartTimeout, RequestTimeout time.Duration
}

// Files are the local files a Config resolves to, each by absolute path.
type Files struct {
	RuntimeLib string       // the ONNX Runtime library
	Model      assets.Model // the model's ONNX file and labels, and its name
	Gallery    string       // the gallery file; empty to classify
}

// Resolve finds the ONNX Runtime library, the model and the gallery cfg
// names, downloading into the cache what is only to be had by URL and
// checking each file against its known digest. It is the one place that
// turns settings into files: Load uses it, and so does a process that
// checks the files once before handing them to its workers (Files.Config).
func Resolve(ctx context.Context, cfg Config, log *slog.Logger) (Files, error) {
	lib, err := ResolveRuntime(ctx, cfg, log)
	if err != nil {
		return Files{}, err
	}
	mcfg := cfg.Model
	mcfg.Cache, mcfg.Log = cfg.Cache, log
	m, err := assets.ResolveModel(ctx, mcfg)
	if err != nil {
		return Files{}, err
	}
	f := Files{RuntimeLib: lib, Model: m, Gallery: cfg.Gallery}
	// Absolute, so that a process started in another directory finds them.
	for _, p := range []*string{&f.RuntimeLib, &f.Model.Path, &f.Model.Labels, &f.Gallery} {
		if *p == "" {
			continue
		}
		if *p, err = filepath.Abs(*p); err != nil {
			return Files{}, err
		}
	}
	return f, nil
}

// Config names exactly f's files, with threads intra-op threads per
// inference: what a process hands its workers (see Config.Args) so that
// they load what it checked and look nothing up.
func (f Files) Config(threads int) Config {
	return Config{
		RuntimeLib: f.RuntimeLib,
		Model:      assets.ModelConfig{Spec: f.Model.Path},
		Gallery:    f.Gallery,
		Threads:    threads,
	}
}

// Load finds and loads the runtime, the model and, if configured, the
// gallery. The Classifier is returned too, for enrollment; the caller
// closes it.
func Load(ctx context.Context, cfg Config, log *slog.Logger) (*Classifier, Recognizer, error) {
	f, err := Resolve(ctx, cfg, log)
	if err != nil {
		return nil, nil, err
	}
	return f.Load(cfg.Threads, log)
}

// Load loads f with threads intra-op threads per inference (at least one).
func (f Files) Load(threads int, log *slog.Logger) (*Classifier, Recognizer, error) {
	rt, err := ort.Load(f.RuntimeLib)
	if err != nil {
		return nil, nil, err
	}
	c, err := NewClassifier(rt, f.Model, max(threads, 1))
	if err != nil {
		return nil, nil, err
	}
	log.Debug("model loaded", "model", f.Model.Name, "path", f.Model.Path, "onnxruntime", rt.Version(), "library", f.RuntimeLib)
	if f.Gallery == "" {
		return c, c, nil
	}
	g, err := LoadGallery(f.Gallery)
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	r, err := NewGalleryRecognizer(c, g)
	if err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("gallery %s: %w", f.Gallery, err)
	}
	return c, r, nil
}

// ResolveRuntime finds the ONNX Runtime library, downloading it into the
// cache if no local copy is configured.
func ResolveRuntime(ctx context.Context, cfg Config, log *slog.Logger) (string, error) {
	src, err := assets.RuntimeSource()
	if err != nil {
		return "", err
	}
	src.Path, src.Mirrors, src.Cache, src.Log = cfg.RuntimeLib, cfg.RuntimeMirrors, cfg.Cache, log
	lib, err := assets.Resolve(ctx, src)
	if err != nil {
		return "", fmt.Errorf("%w (set -ort-lib or SURGE_ORT_LIB, or run `make ort`)", err)
	}
	return lib, nil
}
