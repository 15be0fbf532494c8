package vision

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/draw"
	"image/jpeg"
	"path/filepath"
	"strings"
	"testing"

	"github.com/surgeml/surge/internal/testenv"
)

// jpegTestImages are image/jpeg's own test images (testdata/jpeg/README.md).
func jpegTestImages(t testing.TB) map[string][]byte {
	t.Helper()
	paths, err := filepath.Glob("testdata/jpeg/*.jpeg")
	if err != nil || len(paths) < 26 {
		t.Fatalf("testdata/jpeg: %d files, %v", len(paths), err)
	}
	files := map[string][]byte{}
	for _, p := range paths {
		files[filepath.Base(p)] = readFile(t, p)
	}
	return files
}

func rgba(img image.Image) *image.RGBA {
	out := image.NewRGBA(img.Bounds())
	draw.Draw(out, out.Rect, img, img.Bounds().Min, draw.Src)
	return out
}

// Every layout image/jpeg reads decodes to its pixels, and a file it
// cannot finish is an error, not a picture.
func TestJPEGDecodesAsImageJPEG(t *testing.T) {
	for name, data := range jpegTestImages(t) {
		want, wantErr := jpeg.Decode(bytes.NewReader(data))
		got, err := Decode(data, DefaultMaxPixels)
		if wantErr != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Errorf("%s: %v, want ErrCorrupt as image/jpeg fails (%v)", name, err, wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if g, w := rgba(got), rgba(want); g.Rect != w.Rect || !bytes.Equal(g.Pix, w.Pix) {
			t.Errorf("%s: pixels differ from image/jpeg's", name)
		}
	}
}

// layouts are the JPEG layouts image/jpeg reads, by their sampling factors.
var layouts = []struct {
	name     string
	sampling [][2]int
	adobe    int // Adobe APP14 transform, or -1 for a JFIF file
}{
	{"grey", [][2]int{{1, 1}}, -1},
	{"grey 2×2", [][2]int{{2, 2}}, -1},
	{"4:4:4", [][2]int{{1, 1}, {1, 1}, {1, 1}}, -1},
	{"4:2:2", [][2]int{{2, 1}, {1, 1}, {1, 1}}, -1},
	{"4:2:0", [][2]int{{2, 2}, {1, 1}, {1, 1}}, -1},
	{"4:4:0", [][2]int{{1, 2}, {1, 1}, {1, 1}}, -1},
	{"4:1:1", [][2]int{{4, 1}, {1, 1}, {1, 1}}, -1},
	{"4:1:0", [][2]int{{4, 2}, {1, 1}, {1, 1}}, -1},
	{"RGB", [][2]int{{1, 1}, {1, 1}, {1, 1}}, 0},
	{"CMYK", [][2]int{{1, 1}, {1, 1}, {1, 1}, {1, 1}}, 0},
	{"YCCK 4:2:0", [][2]int{{2, 2}, {1, 1}, {1, 1}, {2, 2}}, 2},
}

func flatJPEG(t testing.TB, w, h int, sampling [][2]int, progressive bool, adobe int) []byte {
	t.Helper()
	var buf bytes.Buffer
	l := testenv.JPEGLayout{Width: w, Height: h, Sampling: sampling, Progressive: progressive, AdobeTransform: adobe}
	if err := testenv.FlatJPEG(&buf, l, func(c, bx, by int) uint8 { return uint8(bx*7 + by*3 + 50*c) }); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Inspect's limit rests on an estimate of what image/jpeg allocates; it
// must not be under what it really allocates, for any layout, baseline or
// progressive, nor far over it.
func TestJPEGDecodeBytes(t *testing.T) {
	check := func(name string, data []byte) {
		t.Helper()
		frame, err := readJPEGFrame(data)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var decErr error
		got := int64(allocated(func() { _, decErr = jpeg.Decode(bytes.NewReader(data)) }))
		if decErr != nil {
			t.Fatalf("%s: image/jpeg: %v", name, decErr)
		}
		est := frame.decodeBytes()
		t.Logf("%s (%s): estimated %d KB, allocated %d KB", name, frame.describe(), est>>10, got>>10)
		if got > est || est > got+got/20+jpegFixedBytes {
			t.Errorf("%s (%s): estimated %d bytes, image/jpeg allocated %d", name, frame.describe(), est, got)
		}
	}
	for name, data := range jpegTestImages(t) {
		if !strings.Contains(name, "truncated") {
			check(name, data)
		}
	}
	for _, l := range layouts {
		for _, progressive := range []bool{false, true} {
			// Sides that are no multiple of an MCU, to count the padding.
			check(fmt.Sprintf("%s progressive=%v 1203×905", l.name, progressive), flatJPEG(t, 1203, 905, l.sampling, progressive, l.adobe))
		}
	}
}

// Decode of a JPEG it reduces allocates no more than Inspect counted.
func TestJPEGReducedDecodeIsWithinItsEstimate(t *testing.T) {
	for _, c := range []struct {
		name     string
		w, h     int
		sampling [][2]int
	}{
		{"4:2:0 3000×2000", 3000, 2000, [][2]int{{2, 2}, {1, 1}, {1, 1}}},
		{"4:2:0 panorama 6000×1000", 6000, 1000, [][2]int{{2, 2}, {1, 1}, {1, 1}}},
		{"4:4:4 panorama 1000×3000", 1000, 3000, [][2]int{{1, 1}, {1, 1}, {1, 1}}},
		{"grey 1100×4000", 1100, 4000, [][2]int{{1, 1}}},
	} {
		for _, progressive := range []bool{false, true} {
			data := flatJPEG(t, c.w, c.h, c.sampling, progressive, -1)
			h, err := Inspect(data, DefaultMaxPixels)
			if err != nil {
				t.Fatal(err)
			}
			frame, err := readJPEGFrame(data)
			if err != nil {
				t.Fatal(err)
			}
			var img image.Image
			got := int64(allocated(func() { img, err = Decode(data, DefaultMaxPixels) }))
			if err != nil {
				t.Fatal(err)
			}
			est := frame.decodeBytes() + reducedBytes(h)
			t.Logf("%s progressive=%v: decoded to %v; estimated %d KB, allocated %d KB", c.name, progressive, img.Bounds().Size(), est>>10, got>>10)
			if got > est {
				t.Errorf("%s progressive=%v: Decode allocated %d bytes, over the %d Inspect counted", c.name, progressive, got, est)
			}
			if short := min(img.Bounds().Dx(), img.Bounds().Dy()); short < MinSide {
				t.Errorf("%s: decoded at %v, shorter side under %d", c.name, img.Bounds().Size(), MinSide)
			}
		}
	}
}

// The JPEGs Inspect refuses, from their headers alone, and why: phone
// photos of every size up to the pixel limit are taken as cameras write
// them (baseline 4:2:0), a progressive one up to 12 MP; the hostile
// images of issue 10 are refused with a reason that names the limit and
// the image's size.
func TestJPEGLimits(t *testing.T) {
	yuv420 := [][2]int{{2, 2}, {1, 1}, {1, 1}}
	yuv444 := [][2]int{{1, 1}, {1, 1}, {1, 1}}
	for _, c := range []struct {
		name        string
		w, h        int
		sampling    [][2]int
		progressive bool
		refused     bool
	}{
		{"12 MP phone photo", 4032, 3024, yuv420, false, false},
		{"12 MP progressive", 4032, 3024, yuv420, true, false},
		{"24 MP phone photo", 5712, 4284, yuv420, false, false},
		{"24 MP progressive", 5712, 4284, yuv420, true, true},
		{"48 MP phone photo", 8064, 6048, yuv420, false, false},
		{"48 MP progressive", 8064, 6048, yuv420, true, true},
		{"50 MP 4:4:4", 8160, 6120, yuv444, false, true},
		{"24 MP 4:4:4", 6000, 4000, yuv444, false, false},
		{"7000×7000 progressive 4:4:4", 7000, 7000, yuv444, true, true},
		{"49000×1016 progressive 4:4:4", 49000, 1016, yuv444, true, true},
		{"1016×49000 progressive 4:4:4", 1016, 49000, yuv444, true, true},
	} {
		data := flatJPEG(t, c.w, c.h, c.sampling, c.progressive, -1)
		_, err := Inspect(data, DefaultMaxPixels)
		t.Logf("%s: %v", c.name, err)
		switch {
		case !c.refused && err != nil:
			t.Errorf("%s: %v, want it taken", c.name, err)
		case c.refused && !errors.Is(err, ErrTooLarge):
			t.Errorf("%s: %v, want ErrTooLarge", c.name, err)
		case c.refused && !strings.Contains(err.Error(), fmt.Sprintf("%d×%d", c.w, c.h)),
			c.refused && !strings.Contains(err.Error(), fmt.Sprintf("limit of %d MB", MaxDecodeMemory>>20)):
			t.Errorf("%s: %q names neither the image's size nor the limit", c.name, err)
		}
	}
}

// No header makes the frame reader panic or read past the data, and
// whatever image/jpeg takes for a frame, it reads the same size.
func FuzzJPEGFrame(f *testing.F) {
	for _, data := range jpegTestImages(f) {
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		frame, err := readJPEGFrame(data)
		cfg, cfgErr := jpeg.DecodeConfig(bytes.NewReader(data))
		if cfgErr != nil {
			return
		}
		if err != nil {
			t.Fatalf("image/jpeg reads a %d×%d frame; readJPEGFrame: %v", cfg.Width, cfg.Height, err)
		}
		if frame.width != cfg.Width || frame.height != cfg.Height {
			t.Fatalf("frame %d×%d, image/jpeg's %d×%d", frame.width, frame.height, cfg.Width, cfg.Height)
		}
		frame.decodeBytes()
		frame.describe()
	})
}

// Large JPEGs are decoded whole and then reduced: what a 12 MP and a 48 MP
// phone photo cost to decode.
func BenchmarkDecodeLargeJPEG(b *testing.B) {
	for _, c := range []struct {
		name        string
		w, h        int
		progressive bool
	}{
		{"12MP-progressive", 4032, 3024, true},
		{"48MP-baseline", 8064, 6048, false},
	} {
		data := flatJPEG(b, c.w, c.h, [][2]int{{2, 2}, {1, 1}, {1, 1}}, c.progressive, -1)
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := Decode(data, DefaultMaxPixels); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
