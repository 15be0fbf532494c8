// Package recognize labels images with an ONNX model, either as an
// ImageNet-style classifier or by nearest neighbour in a gallery of
// enrolled examples.
package recognize

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"image"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/surgeml/surge/internal/assets"
	"github.com/surgeml/surge/internal/ort"
	"github.com/surgeml/surge/internal/vision"
)

// Classifier runs a classification model: one image in, one score per
// class out.
type Classifier struct {
	name    string
	sha256  string
	session *ort.Session
	labels  []string
	prep    vision.Preprocess
	// scratch reuses the megabyte or so of buffers each image needs: at
	// hundreds of images a second the garbage collector would otherwise
	// cost more than the preprocessing.
	scratch sync.Pool
}

type scratch struct {
	input   []float32
	scratch *vision.Scratch
}

// NewClassifier loads model m. threads is the intra-op thread count per
// inference.
func NewClassifier(rt *ort.Runtime, m assets.Model, threads int) (*Classifier, error) {
	sum, err := fileSHA256(m.Path)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", m.Name, err)
	}
	labels, err := readLabels(m.Labels)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", m.Name, err)
	}
	s, err := rt.NewSession(m.Path, threads)
	if err != nil {
		return nil, err
	}
	in, out := s.Input.Shape, s.Output.Shape
	if len(in) != 4 || in[1] != 3 || in[2] != in[3] || in[2] <= 0 || len(out) != 2 {
		s.Close()
		return nil, fmt.Errorf("model %s: input %v, output %v; want [N,3,S,S] and [N,classes]", m.Name, in, out)
	}
	if int(out[1]) != len(labels) {
		s.Close()
		return nil, fmt.Errorf("model %s has %d classes but %s has %d labels", m.Name, out[1], m.Labels, len(labels))
	}
	c := &Classifier{
		name:    m.Name,
		sha256:  sum,
		session: s,
		labels:  labels,
		prep:    vision.ForCrop(int(in[2])),
	}
	c.scratch.New = func() any {
		return &scratch{input: make([]float32, c.prep.TensorLen()), scratch: c.prep.NewScratch()}
	}
	return c, nil
}

// Name identifies the model in results.
func (c *Classifier) Name() string { return c.name }

// Output runs the model on img and returns its raw scores (logits).
func (c *Classifier) Output(img image.Image) ([]float32, error) {
	buf := c.scratch.Get().(*scratch)
	defer c.scratch.Put(buf)
	if err := c.prep.Tensor(img, buf.input, buf.scratch); err != nil {
		return nil, err
	}
	return c.session.Run(buf.input, 1)
}

// Classify returns the k most probable classes for img.
func (c *Classifier) Classify(img image.Image, k int) ([]Prediction, error) {
	out, err := c.Output(img)
	if err != nil {
		return nil, err
	}
	return TopK(out, c.labels, k), nil
}

// Recognize labels img with its most probable class.
func (c *Classifier) Recognize(img image.Image) (string, float64, error) {
	top, err := c.Classify(img, 1)
	if err != nil {
		return "", 0, err
	}
	return top[0].Label, top[0].Score, nil
}

// Close frees the model.
func (c *Classifier) Close() error { return c.session.Close() }

func readLabels(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading labels: %w", err)
	}
	defer f.Close()
	var labels []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		labels = append(labels, strings.TrimRight(sc.Text(), "\r"))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading labels %s: %w", path, err)
	}
	for i, l := range labels {
		if strings.TrimSpace(l) == "" {
			return nil, fmt.Errorf("labels %s: line %d is empty", path, i+1)
		}
	}
	return labels, nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hashing %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
