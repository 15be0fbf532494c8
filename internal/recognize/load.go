package recognize

import (
	"context"
	"fmt"
	"image"
	"log/slog"

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
}

// Load finds and loads the runtime, the model and, if configured, the
// gallery. The Classifier is returned too, for enrollment; the caller
// closes it.
func Load(ctx context.Context, cfg Config, log *slog.Logger) (*Classifier, Recognizer, error) {
	lib, err := ResolveRuntime(ctx, cfg, log)
	if err != nil {
		return nil, nil, err
	}
	rt, err := ort.Load(lib)
	if err != nil {
		return nil, nil, err
	}
	mcfg := cfg.Model
	mcfg.Cache, mcfg.Log = cfg.Cache, log
	m, err := assets.ResolveModel(ctx, mcfg)
	if err != nil {
		return nil, nil, err
	}
	c, err := NewClassifier(rt, m, max(cfg.Threads, 1))
	if err != nil {
		return nil, nil, err
	}
	log.Debug("model loaded", "model", m.Name, "path", m.Path, "onnxruntime", rt.Version(), "library", lib)
	if cfg.Gallery == "" {
		return c, c, nil
	}
	g, err := LoadGallery(cfg.Gallery)
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	r, err := NewGalleryRecognizer(c, g)
	if err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("gallery %s: %w", cfg.Gallery, err)
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
		return "", fmt.Errorf("%w (set SURGE_ORT_LIB, or run `make ort`)", err)
	}
	return lib, nil
}
