package recognize_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/surgeml/surge/events"
	"github.com/surgeml/surge/internal/recognize"
	"github.com/surgeml/surge/internal/testenv"
)

func enrolledFaces(t *testing.T, c *recognize.Classifier) *recognize.Gallery {
	t.Helper()
	labels := testenv.Labels(t, "datasets", "faces", "face_images_100.csv")
	g := &recognize.Gallery{Threshold: recognize.DefaultThreshold}
	rep, err := recognize.EnrollDir(g, c, testenv.Path(t, "datasets", "faces", "face_images_100"), labels, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Enrolled != 100 || len(rep.Missing) != 0 || len(rep.Unlabeled) != 0 {
		t.Fatalf("enrollment report %+v", rep)
	}
	return g
}

// Enrolled from the 100-image set, the gallery answers all of the 1000-image
// set, after a save and load.
func TestGalleryFaces(t *testing.T) {
	c := classifier(t)
	path := filepath.Join(t.TempDir(), "faces.gallery")
	if err := enrolledFaces(t, c).Save(path); err != nil {
		t.Fatal(err)
	}
	g, err := recognize.LoadGallery(path)
	if err != nil {
		t.Fatal(err)
	}
	r, err := recognize.NewGalleryRecognizer(c, g)
	if err != nil {
		t.Fatal(err)
	}
	want := testenv.Labels(t, "datasets", "faces", "face_images_1000.csv")
	dir := testenv.Path(t, "datasets", "faces", "face_images_1000")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	wrong := 0
	for _, e := range entries {
		label, score, err := r.Recognize(decode(t, filepath.Join(dir, e.Name())))
		if err != nil {
			t.Fatal(err)
		}
		if stem := events.Stem(e.Name()); label != want[stem] {
			wrong++
			t.Errorf("%s: %s (%.3f), want %s", stem, label, score, want[stem])
		}
	}
	if len(entries) != 1000 || wrong != 0 {
		t.Fatalf("%d images, %d wrong", len(entries), wrong)
	}
}

// The default threshold separates the face set's people: every pair of
// distinct photos of different people is below it, so a stranger comes out
// Unknown rather than as the nearest enrolled face.
func TestGalleryThreshold(t *testing.T) {
	c := classifier(t)
	g := enrolledFaces(t, c)
	highest := -1.0
	for _, a := range g.Entries {
		for _, b := range g.Entries {
			if a.Label == b.Label {
				continue
			}
			if s := recognize.Cosine(a.Vector, b.Vector); s > highest {
				highest = s
			}
		}
	}
	t.Logf("closest pair of different people: cosine %.3f (threshold %.2f)", highest, recognize.DefaultThreshold)
	if highest >= recognize.DefaultThreshold {
		t.Fatalf("different people reach cosine %.3f, at or above the threshold", highest)
	}
	// A photo that is not a face at all is Unknown.
	r, err := recognize.NewGalleryRecognizer(c, g)
	if err != nil {
		t.Fatal(err)
	}
	label, score, err := r.Recognize(decode(t, testenv.Path(t, "images", "darknet", "eagle.jpg")))
	if err != nil {
		t.Fatal(err)
	}
	if label != recognize.Unknown {
		t.Fatalf("eagle.jpg recognised as %s (%.3f)", label, score)
	}
}

func TestGalleryRejectsOtherModel(t *testing.T) {
	c := classifier(t)
	g := &recognize.Gallery{Model: "other", ModelSHA: fmt.Sprintf("%064d", 0), Threshold: 0.5,
		Entries: []recognize.Entry{{Label: "x", Vector: make([]float32, 1000)}}}
	if _, err := recognize.NewGalleryRecognizer(c, g); err == nil {
		t.Fatal("a gallery from another model was accepted")
	}
}
