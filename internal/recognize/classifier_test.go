package recognize_test

import (
	"image"
	"os"
	"slices"
	"testing"

	"github.com/surgeml/surge/internal/recognize"
	"github.com/surgeml/surge/internal/testenv"
	"github.com/surgeml/surge/internal/vision"
)

func classifier(t testing.TB) *recognize.Classifier {
	t.Helper()
	c, err := recognize.NewClassifier(testenv.Runtime(t), testenv.Model(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func decode(t testing.TB, path string) image.Image {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	img, err := vision.Decode(data, vision.DefaultMaxPixels)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// The checks SOURCE.md calls robust across resamplers and decoders.
func TestDarknetPhotos(t *testing.T) {
	c := classifier(t)
	top := func(name string) []recognize.Prediction {
		p, err := c.Classify(decode(t, testenv.Path(t, "images", "darknet", name)), 5)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %v", name, p)
		return p
	}
	if p := top("dog.jpg"); !slices.Contains([]int{248, 249, 250}, p[0].Index) {
		t.Errorf("dog.jpg top-1 = %v, want a husky or malamute", p[0])
	}
	p := top("eagle.jpg")
	if p[0].Index != 22 || p[0].Label != "bald eagle" {
		t.Errorf("eagle.jpg top-1 = %v, want bald eagle", p[0])
	}
	if !slices.Contains([]int{21, 23}, p[1].Index) && !slices.Contains([]int{21, 23}, p[2].Index) {
		t.Errorf("eagle.jpg top-3 = %v, want kite or vulture in it", p[:3])
	}
	if p := top("giraffe.jpg"); p[0].Index != 340 {
		t.Errorf("giraffe.jpg top-1 = %v, want zebra", p[0])
	}
	if p := top("kite.jpg"); !slices.Contains([]int{701, 978}, p[0].Index) || !slices.Contains([]int{701, 978}, p[1].Index) {
		t.Errorf("kite.jpg top-2 = %v, want parachute and seashore", p[:2])
	}
}

func benchmarkFile(b *testing.B, path string) {
	c := classifier(b)
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		img, err := vision.Decode(data, vision.DefaultMaxPixels)
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := c.Recognize(img); err != nil {
			b.Fatal(err)
		}
	}
}

// One image at a time on one intra-op thread, decode included.
func BenchmarkClassifyFace(b *testing.B) {
	benchmarkFile(b, testenv.Path(b, "datasets", "faces", "face_images_100", "test_00.jpg"))
}

func BenchmarkClassifyDarknetDog(b *testing.B) {
	benchmarkFile(b, testenv.Path(b, "images", "darknet", "dog.jpg"))
}

func BenchmarkPreprocessDog(b *testing.B) {
	data, err := os.ReadFile(testenv.Path(b, "images", "darknet", "dog.jpg"))
	if err != nil {
		b.Fatal(err)
	}
	img, err := vision.Decode(data, vision.DefaultMaxPixels)
	if err != nil {
		b.Fatal(err)
	}
	p := vision.ForCrop(224)
	dst, scratch := make([]float32, p.TensorLen()), p.NewScratch()
	for b.Loop() {
		if err := p.Tensor(img, dst, scratch); err != nil {
			b.Fatal(err)
		}
	}
}
