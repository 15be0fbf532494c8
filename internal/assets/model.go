package assets

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
)

// DefaultModel is the classifier used when none is configured.
const DefaultModel = "mobilenetv2-12-int8"

// Model is a resolved model folder: the ONNX file and its class labels,
// one per line in output order.
type Model struct {
	Name   string
	Path   string // model.onnx
	Labels string // labels.txt
}

// ModelConfig says which model to use and where to look for it.
type ModelConfig struct {
	// Spec is a model name (looked up in Mirrors), a folder or .onnx file
	// path, or an http(s) URL of a .tar.gz holding model.onnx and
	// labels.txt.
	Spec string
	// SHA256 is the digest of the URL's archive (required for URLs), or of
	// model.onnx for a path (optional). Known names carry their own.
	SHA256  string
	Mirrors []string
	Cache   string
	Client  *http.Client
	Log     *slog.Logger
}

// ModelName is the name results carry for the model a spec resolves to,
// known before anything is fetched: a folder's name, a model file's
// folder's name, or a URL's archive name. A web tier that never loads
// the model compares cached answers against it.
func ModelName(spec string) string {
	switch {
	case spec == "":
		return DefaultModel
	case strings.HasPrefix(spec, "http://") || strings.HasPrefix(spec, "https://"):
		return strings.TrimSuffix(strings.TrimSuffix(filepath.Base(spec), ".tgz"), ".tar.gz")
	case strings.HasSuffix(spec, ".onnx"):
		return filepath.Base(filepath.Dir(spec))
	default:
		return filepath.Base(spec)
	}
}

// WithGallery names a model whose outputs a gallery maps to labels: its
// answers differ from the bare model's, so a cache must tell them apart.
func WithGallery(model string) string { return model + "+gallery" }

// ResolveModel finds the configured model's files, verifying them.
func ResolveModel(ctx context.Context, cfg ModelConfig) (Model, error) {
	spec := cfg.Spec
	if spec == "" {
		spec = DefaultModel
	}
	if strings.HasPrefix(spec, "http://") || strings.HasPrefix(spec, "https://") {
		return modelFromURL(ctx, cfg, spec)
	}
	if fi, err := os.Stat(spec); err == nil {
		dir, file := spec, filepath.Join(spec, "model.onnx")
		if !fi.IsDir() {
			dir, file = filepath.Dir(spec), spec
		}
		name := filepath.Base(dir)
		modelSum, labelsSum, _ := knownModel(name)
		if cfg.SHA256 != "" {
			modelSum, labelsSum = cfg.SHA256, ""
		}
		return modelIn(ctx, name, Source{Path: file, SHA256: modelSum}, Source{Path: filepath.Join(dir, "labels.txt"), SHA256: labelsSum})
	}
	if strings.ContainsAny(spec, `/\`) {
		return Model{}, fmt.Errorf("model %s: no such file or directory", spec)
	}
	modelSum, labelsSum, ok := knownModel(spec)
	if !ok && cfg.SHA256 != "" {
		modelSum = cfg.SHA256
	}
	src := func(file, sum string) Source {
		return Source{What: "model " + spec + " " + file, Mirrors: cfg.Mirrors, File: filepath.Join(spec, file), SHA256: sum}
	}
	m, err := modelIn(ctx, spec, src("model.onnx", modelSum), src("labels.txt", labelsSum))
	if errors.Is(err, ErrUnavailable) {
		err = fmt.Errorf("%w (set SURGE_MODELS to a directory of model folders, or SURGE_MODEL to a path or URL)", err)
	}
	return m, err
}

func modelIn(ctx context.Context, name string, model, labels Source) (Model, error) {
	if model.What == "" {
		model.What, labels.What = "model "+name, "labels of model "+name
	}
	mp, err := Resolve(ctx, model)
	if err != nil {
		return Model{}, err
	}
	lp, err := Resolve(ctx, labels)
	if err != nil {
		return Model{}, err
	}
	return Model{Name: name, Path: mp, Labels: lp}, nil
}

// modelFromURL downloads a model archive into the cache once, keyed by its
// digest, and unpacks it beside.
func modelFromURL(ctx context.Context, cfg ModelConfig, url string) (Model, error) {
	if cfg.SHA256 == "" {
		return Model{}, fmt.Errorf("model %s: a URL needs SURGE_MODEL_SHA256, the archive's SHA-256", url)
	}
	name := ModelName(url)
	key := strings.ToLower(cfg.SHA256)
	archive, err := Resolve(ctx, Source{
		What: "model archive " + url, File: filepath.Join("models", key+".tar.gz"),
		URL: url, SHA256: key, Cache: cfg.Cache, Client: cfg.Client, Log: cfg.Log,
	})
	if err != nil {
		return Model{}, err
	}
	dir := filepath.Join(cfg.Cache, "models", key)
	if err := unpackModel(archive, dir); err != nil {
		return Model{}, fmt.Errorf("model %s: unpacking %s: %w", url, archive, err)
	}
	return modelIn(ctx, name, Source{Path: filepath.Join(dir, "model.onnx")}, Source{Path: filepath.Join(dir, "labels.txt")})
}

// unpackModel extracts model.onnx and labels.txt, wherever they sit in
// the archive, into dir. Nothing else is written, so hostile member names
// cannot escape dir.
func unpackModel(archive, dir string) error {
	return unpackOnce(dir, filepath.Join(dir, "labels.txt"), func(tmp string) error {
		found := map[string]bool{}
		err := forEachMember(archive, func(hdr *tar.Header, r io.Reader) error {
			base := filepath.Base(hdr.Name)
			if hdr.Typeflag != tar.TypeReg || (base != "model.onnx" && base != "labels.txt") || found[base] {
				return nil
			}
			found[base] = true
			return writeMember(filepath.Join(tmp, base), r, 0o644)
		})
		if err == nil && (!found["model.onnx"] || !found["labels.txt"]) {
			err = errors.New("archive lacks model.onnx or labels.txt")
		}
		return err
	})
}
