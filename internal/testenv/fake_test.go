package testenv_test

import (
	"bytes"
	"image"
	"image/jpeg"
	"testing"

	"github.com/surgeml/surge/internal/testenv"
)

// Each stand-in photo is a JPEG of its photo's pixel size, in the byte
// range the intake tests rely on, that FakeRecognizer labels as the real
// model labels the photo; an image that is no stand-in is labelled
// FakeUnknown.
func TestStandInPhotos(t *testing.T) {
	for name, want := range map[string]struct {
		label              string
		width, height      int
		minBytes, maxBytes int
	}{
		// More than the 2 KB the intake tests send before stalling; under
		// the 200 KB limit of TestBadInput; kite.jpg over it.
		"dog.jpg":   {"Alaskan Malamute", 768, 576, 4 << 10, 200 << 10},
		"eagle.jpg": {"bald eagle", 773, 512, 4 << 10, 200 << 10},
		"kite.jpg":  {"parachute", 1352, 900, 200 << 10, 10 << 20},
	} {
		data := testenv.StandInPhoto(t, name)
		img, err := jpeg.Decode(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		label, score, err := testenv.FakeRecognizer{}.Recognize(img)
		if label != want.label || score <= 0 || err != nil {
			t.Errorf("%s labelled %q (%v), %v; want %q", name, label, score, err, want.label)
		}
		if b := img.Bounds(); b.Dx() != want.width || b.Dy() != want.height || len(data) < want.minBytes || len(data) > want.maxBytes {
			t.Errorf("%s: %v, %d bytes; want %dx%d, %d to %d bytes", name, b.Size(), len(data), want.width, want.height, want.minBytes, want.maxBytes)
		}
		t.Logf("%s: %d bytes", name, len(data))
	}
	gray := image.NewGray(image.Rect(0, 0, 64, 64))
	for i := range gray.Pix {
		gray.Pix[i] = uint8(i)
	}
	nearMiss := image.NewRGBA(image.Rect(0, 0, 64, 64))
	for i := 0; i < len(nearMiss.Pix); i += 4 {
		copy(nearMiss.Pix[i:], []uint8{150, 110, 100, 255}) // dog's colour, too blue
	}
	for what, img := range map[string]image.Image{
		"a gradient":  gray,
		"a near miss": nearMiss,
		"nothing":     image.NewRGBA(image.Rectangle{}),
	} {
		if label, score, _ := (testenv.FakeRecognizer{}).Recognize(img); label != testenv.FakeUnknown || score != 0 {
			t.Errorf("%s labelled %q (%v), want %q", what, label, score, testenv.FakeUnknown)
		}
	}
}
