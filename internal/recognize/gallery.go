package recognize

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"math"
	"os"

	"github.com/google/renameio/v2"

	"github.com/surgeml/surge/internal/assets"
)

// Unknown is the label for a face (or anything) too far from every
// enrolled example.
const Unknown = "Unknown"

// DefaultThreshold is the lowest cosine similarity that still counts as a
// match. Enrolled examples match themselves at 1.0; the face set's distinct
// people sit below 0.9 of each other (see TestGalleryThreshold).
const DefaultThreshold = 0.9

// Gallery recognises images by nearest neighbour among enrolled examples,
// comparing the model's output vectors by cosine similarity.
type Gallery struct {
	Model     string // name of the model whose outputs these are
	ModelSHA  string // SHA-256 of that model's file
	Threshold float64
	Entries   []Entry
}

// Entry is one enrolled example.
type Entry struct {
	Label  string
	Source string    // where it came from, e.g. the image's stem
	Vector []float32 // Embedding of the model's output
}

// Enroll adds img under label.
func (g *Gallery) Enroll(c *Classifier, img image.Image, label, source string) error {
	if label == "" {
		return fmt.Errorf("enrolling %s: empty label", source)
	}
	if g.Model == "" {
		g.Model, g.ModelSHA = c.name, c.sha256
	}
	if err := g.compatible(c); err != nil {
		return err
	}
	out, err := c.Output(img)
	if err != nil {
		return fmt.Errorf("enrolling %s: %w", source, err)
	}
	g.Entries = append(g.Entries, Entry{Label: label, Source: source, Vector: Embedding(out)})
	return nil
}

// Match returns the label of the nearest entry and its similarity, or
// Unknown when nothing reaches the threshold.
func (g *Gallery) Match(vector []float32) (string, float64) {
	best, label := math.Inf(-1), Unknown
	for _, e := range g.Entries {
		if s := Cosine(vector, e.Vector); s > best {
			best, label = s, e.Label
		}
	}
	if best < g.Threshold {
		return Unknown, best
	}
	return label, best
}

func (g *Gallery) compatible(c *Classifier) error {
	if g.ModelSHA != c.sha256 {
		return fmt.Errorf("gallery was enrolled with model %s (sha256 %.12s), not %s (sha256 %.12s); enroll again",
			g.Model, g.ModelSHA, c.name, c.sha256)
	}
	return nil
}

// GalleryRecognizer labels images by gallery match.
type GalleryRecognizer struct {
	c *Classifier
	g *Gallery
}

// NewGalleryRecognizer pairs a gallery with the model it was enrolled with.
func NewGalleryRecognizer(c *Classifier, g *Gallery) (*GalleryRecognizer, error) {
	if len(g.Entries) == 0 {
		return nil, errors.New("gallery is empty")
	}
	if err := g.compatible(c); err != nil {
		return nil, err
	}
	return &GalleryRecognizer{c: c, g: g}, nil
}

// Name identifies the model in results.
func (r *GalleryRecognizer) Name() string { return assets.WithGallery(r.c.name) }

// Recognize labels img with the nearest enrolled example's label.
func (r *GalleryRecognizer) Recognize(img image.Image) (string, float64, error) {
	out, err := r.c.Output(img)
	if err != nil {
		return "", 0, err
	}
	label, score := r.g.Match(Embedding(out))
	return label, score, nil
}

// galleryFile is the on-disk form: JSON, with vectors as base64 of
// little-endian float32 to keep the file a third the size of decimals.
type galleryFile struct {
	Version   int         `json:"version"`
	Model     string      `json:"model"`
	ModelSHA  string      `json:"model_sha256"`
	Threshold float64     `json:"threshold"`
	Entries   []fileEntry `json:"entries"`
}

type fileEntry struct {
	Label  string `json:"label"`
	Source string `json:"source"`
	Vector string `json:"vector"`
}

const galleryVersion = 1

// Save writes the gallery atomically.
func (g *Gallery) Save(path string) error {
	f := galleryFile{Version: galleryVersion, Model: g.Model, ModelSHA: g.ModelSHA, Threshold: g.Threshold}
	for _, e := range g.Entries {
		buf := make([]byte, 4*len(e.Vector))
		for i, v := range e.Vector {
			binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(v))
		}
		f.Entries = append(f.Entries, fileEntry{Label: e.Label, Source: e.Source, Vector: base64.StdEncoding.EncodeToString(buf)})
	}
	data, err := json.MarshalIndent(f, "", " ")
	if err != nil {
		return fmt.Errorf("encoding gallery: %w", err)
	}
	if err := renameio.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing gallery: %w", err)
	}
	return nil
}

// LoadGallery reads a gallery written by Save.
func LoadGallery(path string) (*Gallery, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading gallery: %w", err)
	}
	var f galleryFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("reading gallery %s: %w", path, err)
	}
	if f.Version != galleryVersion {
		return nil, fmt.Errorf("gallery %s has version %d, want %d", path, f.Version, galleryVersion)
	}
	g := &Gallery{Model: f.Model, ModelSHA: f.ModelSHA, Threshold: f.Threshold}
	dims := -1
	for i, e := range f.Entries {
		buf, err := base64.StdEncoding.DecodeString(e.Vector)
		if err != nil || len(buf)%4 != 0 || len(buf) == 0 {
			return nil, fmt.Errorf("gallery %s: entry %d has a malformed vector", path, i)
		}
		if dims >= 0 && len(buf)/4 != dims {
			return nil, fmt.Errorf("gallery %s: entry %d has %d dimensions, others %d", path, i, len(buf)/4, dims)
		}
		dims = len(buf) / 4
		v := make([]float32, dims)
		for j := range v {
			v[j] = math.Float32frombits(binary.LittleEndian.Uint32(buf[4*j:]))
		}
		g.Entries = append(g.Entries, Entry{Label: e.Label, Source: e.Source, Vector: v})
	}
	return g, nil
}
