package ort_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/surgeml/surge/internal/testenv"
)

// BenchmarkRun times one Run of the shared model on one intra-op thread,
// at the batch a worker runs (1) and a large one (32), so that the cost of
// the binding itself shows against the model's.
func BenchmarkRun(b *testing.B) {
	s, err := testenv.Runtime(b).NewSession(testenv.Model(b).Path, 1)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	for _, batch := range []int{1, 32} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			input := make([]float32, batch*3*224*224)
			for i := range input {
				input[i] = float32(i%251)/125 - 1
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Run(input, batch); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRunTiny times one Run of a model that does almost nothing, so
// what it measures is the binding's cost per call: creating and releasing
// the two tensors, and the calls themselves.
func BenchmarkRunTiny(b *testing.B) {
	path := filepath.Join(b.TempDir(), "identity.onnx")
	if err := os.WriteFile(path, unaryModel("Identity", floatElement, "n", "3"), 0o644); err != nil {
		b.Fatal(err)
	}
	s, err := testenv.Runtime(b).NewSession(path, 1)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	input := []float32{1, 2, 3}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Run(input, 1); err != nil {
			b.Fatal(err)
		}
	}
}
