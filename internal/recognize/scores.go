package recognize

import (
	"math"
	"slices"
	"sort"
)

// Prediction is one class with its softmax probability.
type Prediction struct {
	Index int
	Label string
	Score float64
}

// TopK turns logits into the k most probable classes, best first. The
// quantised model produces exact ties, which go to the lower class index so
// that answers are reproducible.
func TopK(logits []float32, labels []string, k int) []Prediction {
	probs := Softmax(logits)
	k = min(k, len(probs))
	if k <= 0 {
		return nil
	}
	// Insertion into a k-long list: k is tiny next to the class count, and
	// a full sort of a thousand scores per image shows in profiles.
	best := make([]int, 0, k+1)
	for i, p := range probs {
		if len(best) == k && p <= probs[best[k-1]] {
			continue
		}
		at := sort.Search(len(best), func(j int) bool { return p > probs[best[j]] })
		best = slices.Insert(best, at, i)
		if len(best) > k {
			best = best[:k]
		}
	}
	out := make([]Prediction, len(best))
	for n, i := range best {
		out[n] = Prediction{Index: i, Score: probs[i]}
		if i < len(labels) {
			out[n].Label = labels[i]
		}
	}
	return out
}

// Softmax is the numerically stable softmax.
func Softmax(logits []float32) []float64 {
	if len(logits) == 0 {
		return nil
	}
	m := float64(logits[0])
	for _, v := range logits {
		m = math.Max(m, float64(v))
	}
	out := make([]float64, len(logits))
	var sum float64
	for i, v := range logits {
		out[i] = math.Exp(float64(v) - m)
		sum += out[i]
	}
	for i := range out {
		out[i] /= sum
	}
	return out
}

// Embedding centres a model output and scales it to unit length, so that
// the dot product of two embeddings is their cosine similarity and the
// offset all logits share does not make every pair look alike.
func Embedding(output []float32) []float32 {
	var mean float64
	for _, v := range output {
		mean += float64(v)
	}
	mean /= float64(max(len(output), 1))
	out := make([]float32, len(output))
	var norm float64
	for i, v := range output {
		d := float64(v) - mean
		out[i] = float32(d)
		norm += d * d
	}
	if norm == 0 {
		return out
	}
	inv := 1 / math.Sqrt(norm)
	for i := range out {
		out[i] = float32(float64(out[i]) * inv)
	}
	return out
}

// Cosine is the dot product of two embeddings.
func Cosine(a, b []float32) float64 {
	var s float64
	for i := range min(len(a), len(b)) {
		s += float64(a[i]) * float64(b[i])
	}
	return s
}
