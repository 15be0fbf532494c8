package testenv

import (
	"bytes"
	"image"
	"image/color"
	"image/jpeg"
	"math"
	"testing"

	"github.com/surgeml/surge/internal/assets"
)

// The fast tier's stand-ins for the darknet photos and the model that
// labels them: the web tier's and the worker's tests need answers from a
// worker, not the model's judgement, so under -short a JPEG made here
// takes each photo's place and FakeRecognizer labels it as the real model
// labels the photo. Without -short the same tests get the real photos and
// the real model.

// standIn is what stands in for one darknet photo: its pixel size, the
// colour FakeRecognizer reads, and the real model's label for it.
type standIn struct {
	width, height int
	colour        color.RGBA
	label         string
}

// standIns are the darknet photos the tiers' tests upload. Their sizes in
// bytes come near the photos' (noise makes them so): the intake tests cut
// bodies at set offsets, and kite.jpg is the one over 200 KB.
var standIns = map[string]standIn{
	"dog.jpg":   {768, 576, color.RGBA{150, 110, 60, 255}, "Alaskan Malamute"},
	"eagle.jpg": {773, 512, color.RGBA{60, 90, 170, 255}, "bald eagle"},
	"kite.jpg":  {1352, 900, color.RGBA{90, 170, 90, 255}, "parachute"},
}

// FakeModel is FakeRecognizer's model name, which answers carry.
const FakeModel = "fake-recognizer"

// FakeUnknown is FakeRecognizer's label for an image that is not a
// stand-in photo.
const FakeUnknown = "not a stand-in photo"

// Photo is a darknet photo by name (dog.jpg, eagle.jpg, kite.jpg) for the
// tiers' tests: the shared photo, or under -short its StandInPhoto.
func Photo(t testing.TB, name string) []byte {
	t.Helper()
	if testing.Short() {
		return StandInPhoto(t, name)
	}
	return Darknet(t, name)
}

// ModelName is the model the tiers' tests label with: the default model,
// or under -short FakeRecognizer.
func ModelName() string {
	if testing.Short() {
		return FakeModel
	}
	return assets.DefaultModel
}

// Parallel runs the test alongside the package's other parallel tests
// under -short, where tests waiting out timeouts beside a fake would
// otherwise queue behind each other. The full tier runs them one at a
// time: there they share the cores with the real model, and their
// deadlines were set for that.
func Parallel(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Parallel()
	}
}

// StandInPhoto is a JPEG made in place of a darknet photo: noise around
// one colour, at the photo's pixel size.
func StandInPhoto(t testing.TB, name string) []byte {
	t.Helper()
	s, ok := standIns[name]
	if !ok {
		t.Fatalf("no stand-in for %s", name)
	}
	img := image.NewRGBA(image.Rect(0, 0, s.width, s.height))
	rng := uint32(len(name)) * 2654435761
	for i := 0; i < len(img.Pix); i += 4 {
		for c, base := range []uint8{s.colour.R, s.colour.G, s.colour.B} {
			// xorshift: cheap, deterministic noise of ±16 that averages
			// out.
			rng ^= rng << 13
			rng ^= rng >> 17
			rng ^= rng << 5
			img.Pix[i+c] = uint8(min(max(int(base)+int(rng%33)-16, 0), 255))
		}
		img.Pix[i+3] = 255
	}
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// FakeRecognizer stands in for the real model in the fast tier: it labels
// a stand-in photo by its mean colour as the real model labels the photo
// it stands in for, and anything else FakeUnknown.
type FakeRecognizer struct{}

// Name is FakeModel.
func (FakeRecognizer) Name() string { return FakeModel }

// Recognize labels img; it never fails.
func (FakeRecognizer) Recognize(img image.Image) (label string, score float64, err error) {
	var sum [3]float64
	n := 0.0
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y += 4 {
		for x := b.Min.X; x < b.Max.X; x += 4 {
			r, g, bl, _ := img.At(x, y).RGBA()
			sum[0], sum[1], sum[2] = sum[0]+float64(r>>8), sum[1]+float64(g>>8), sum[2]+float64(bl>>8)
			n++
		}
	}
	if n == 0 {
		return FakeUnknown, 0, nil
	}
	best, bestDist := FakeUnknown, 20.0 // JPEG moves a mean by a few levels at most
	for _, s := range standIns {
		d := math.Sqrt(sq(sum[0]/n-float64(s.colour.R)) + sq(sum[1]/n-float64(s.colour.G)) + sq(sum[2]/n-float64(s.colour.B)))
		if d < bestDist {
			best, bestDist = s.label, d
		}
	}
	if best == FakeUnknown {
		return best, 0, nil
	}
	return best, 1, nil
}

func sq(x float64) float64 { return x * x }
