package recognize

import (
	"math"
	"testing"
)

func TestSoftmax(t *testing.T) {
	p := Softmax([]float32{1, 2, 3, 1000})
	var sum float64
	for _, v := range p {
		sum += v
	}
	if math.Abs(sum-1) > 1e-12 || p[3] < 0.999 || math.IsNaN(p[0]) {
		t.Fatalf("Softmax = %v (sum %v)", p, sum)
	}
	if Softmax(nil) != nil {
		t.Fatal("Softmax(nil) is not nil")
	}
}

func TestTopK(t *testing.T) {
	labels := []string{"a", "b", "c", "d"}
	for _, c := range []struct {
		logits []float32
		k      int
		want   []int
	}{
		{[]float32{0, 3, 1, 2}, 2, []int{1, 3}},
		{[]float32{5, 5, 5, 1}, 3, []int{0, 1, 2}}, // ties go to the lower index
		{[]float32{1, 9, 9, 1}, 4, []int{1, 2, 0, 3}},
		{[]float32{1, 2}, 5, []int{1, 0}}, // k beyond the classes
		{[]float32{1, 2}, 0, nil},
	} {
		got := TopK(c.logits, labels, c.k)
		if len(got) != len(c.want) {
			t.Fatalf("TopK(%v, %d) = %v", c.logits, c.k, got)
		}
		for i, p := range got {
			if p.Index != c.want[i] || p.Label != labels[c.want[i]] {
				t.Errorf("TopK(%v, %d)[%d] = %+v, want index %d", c.logits, c.k, i, p, c.want[i])
			}
		}
	}
}

func TestEmbeddingAndCosine(t *testing.T) {
	a := Embedding([]float32{1, 2, 3})
	if s := Cosine(a, a); math.Abs(s-1) > 1e-6 {
		t.Fatalf("self-similarity %v", s)
	}
	// A shared offset on every logit does not change the embedding.
	b := Embedding([]float32{101, 102, 103})
	if s := Cosine(a, b); math.Abs(s-1) > 1e-6 {
		t.Fatalf("offset changed similarity to %v", s)
	}
	c := Embedding([]float32{3, 2, 1})
	if s := Cosine(a, c); math.Abs(s+1) > 1e-6 {
		t.Fatalf("reversed ranking has similarity %v, want -1", s)
	}
	if z := Embedding([]float32{4, 4, 4}); Cosine(z, a) != 0 {
		t.Fatalf("a flat output must match nothing: %v", z)
	}
}
