package vision

import (
	"bytes"
	"encoding/binary"
	"errors"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"os"
	"runtime"
	"slices"
	"testing"

	"github.com/surgeml/surge/internal/testenv"
)

// allocated is how many bytes f allocates in all: an upper bound on the
// most it holds at once.
func allocated(f func()) uint64 {
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

func bigPNG(t testing.TB, w, h, depth, colourType int) []byte {
	t.Helper()
	data, err := testenv.GradientPNG(w, h, depth, colourType)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// A few large images under the pixel limit, each small as a file, each
// of which decoded whole took a worker's memory far past its bound
// (issue 10, defect 4: a 287 KB progressive 7000×7000 JPEG took one to
// 811 MB).
func TestDecodeMemoryIsBounded(t *testing.T) {
	for _, c := range []struct {
		name string
		data func() []byte
		// Slow cases (seconds to make and decode) are left out under
		// -short, which keeps the largest of each format and path.
		slow bool
	}{
		// JPEGs at their limits: a 12 MP progressive 4:2:0 photo, a 48 MP
		// baseline one (TestJPEGLimits has the refused ones).
		{"progressive JPEG 4032×3024 4:2:0", func() []byte { return flatJPEG(t, 4032, 3024, [][2]int{{2, 2}, {1, 1}, {1, 1}}, true, -1) }, false},
		{"JPEG 8064×6048 4:2:0", func() []byte { return flatJPEG(t, 8064, 6048, [][2]int{{2, 2}, {1, 1}, {1, 1}}, false, -1) }, false},
		{"PNG 7000×7000 RGBA 16-bit", func() []byte { return bigPNG(t, 7000, 7000, 16, 6) }, true},
		{"PNG 7000×7000 grey 8-bit", func() []byte { return bigPNG(t, 7000, 7000, 8, 0) }, false},
		{"PNG 49000×1020 RGBA 16-bit", func() []byte { return bigPNG(t, 49000, 1020, 16, 6) }, false},
		{"PNG 65535×762 RGB 16-bit", func() []byte { return bigPNG(t, 65535, 762, 16, 2) }, true},
		{"GIF 7000×7000", func() []byte { return bigGIF(t, 7000, 7000) }, false},
		{"BMP 3600×3600 1-bit", func() []byte { return bmp1(3600, 3600) }, false},
		{"WebP 5600×5600 lossy", func() []byte { return readFile(t, "testdata/lossy-5600x5600.webp") }, false},
		{"WebP 2896×2896 lossless", func() []byte { return readFile(t, "testdata/lossless-2896x2896.webp") }, false},
		{"WebP 2896×2896 with alpha", func() []byte { return readFile(t, "testdata/alpha-2896x2896.webp") }, false},
	} {
		if c.slow && testing.Short() {
			t.Logf("%s: slow, left to the full tier", c.name)
			continue
		}
		data := c.data()
		var img image.Image
		var err error
		n := allocated(func() { img, err = Decode(data, DefaultMaxPixels) })
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		b := img.Bounds()
		t.Logf("%s (%d KB): %v, %.1f MB allocated", c.name, len(data)>>10, b.Size(), float64(n)/(1<<20))
		if n > MaxDecodeMemory {
			t.Errorf("%s: decoding allocated %.0f MB, over the bound of %d MB", c.name, float64(n)/(1<<20), MaxDecodeMemory>>20)
		}
		if short := min(b.Dx(), b.Dy()); short < MinSide {
			t.Errorf("%s: decoded at %v, shorter side under %d", c.name, b.Size(), MinSide)
		}
	}
}

// Formats decoded whole are held to what fits the bound.
func TestWholeDecodedFormatsAreLimited(t *testing.T) {
	for _, c := range []struct {
		name string
		data []byte
	}{
		{"WebP 3000×3000 lossless", readFile(t, "testdata/lossless-3000x3000.webp")},
		{"BMP 3700×3700 1-bit", bmp1(3700, 3700)},
	} {
		if _, err := Inspect(c.data, DefaultMaxPixels); !errors.Is(err, ErrTooLarge) {
			t.Errorf("%s: %v, want ErrTooLarge", c.name, err)
		}
	}
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func bigGIF(t testing.TB, w, h int) []byte {
	t.Helper()
	img := image.NewPaletted(image.Rect(0, 0, w, h), color.Palette{color.Black, color.White})
	for i := range img.Pix {
		img.Pix[i] = uint8(i / w / 100 % 2)
	}
	var buf bytes.Buffer
	if err := gif.Encode(&buf, img, nil); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// bmp1 is a w×h 1-bit BMP of stripes: 13 megapixels in 1.6 MB.
func bmp1(w, h int) []byte {
	stride := (w + 31) / 32 * 4
	var buf bytes.Buffer
	le := func(v ...any) {
		for _, x := range v {
			binary.Write(&buf, binary.LittleEndian, x)
		}
	}
	buf.WriteString("BM")
	le(uint32(62+stride*h), uint32(0), uint32(62))
	le(uint32(40), int32(w), int32(h), uint16(1), uint16(1), uint32(0), uint32(stride*h), int32(2835), int32(2835), uint32(2), uint32(0))
	le(uint32(0), uint32(0xffffff)) // palette: black, white
	row := make([]byte, stride)
	for y := range h {
		for i := range row {
			row[i] = byte(0xf0 >> (y / 64 % 2 * 4))
		}
		buf.Write(row)
	}
	return buf.Bytes()
}

// quadrants is a w×h picture whose four quarters differ, so that every
// flip and turn of it differs too.
func quadrants(w, h int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			c := color.RGBA{40, 40, 40, 255}
			if x >= w/2 {
				c.R = 220
			}
			if y >= h/2 {
				c.G = 200
			}
			img.Set(x, y, c)
		}
	}
	return img
}

func TestOrientation(t *testing.T) {
	var jpg, pngData bytes.Buffer
	if err := jpeg.Encode(&jpg, quadrants(48, 32), &jpeg.Options{Quality: 95}); err != nil {
		t.Fatal(err)
	}
	if err := png.Encode(&pngData, quadrants(48, 32)); err != nil {
		t.Fatal(err)
	}
	webp := readFile(t, "testdata/small-600x400.webp")
	for _, c := range []struct {
		format string
		stored []byte
		tag    func(o int, bigEndian bool) []byte
	}{
		{"JPEG", jpg.Bytes(), func(o int, bigEndian bool) []byte { return testenv.WithOrientation(jpg.Bytes(), o, bigEndian) }},
		{"PNG", pngData.Bytes(), func(o int, _ bool) []byte { return testenv.PNGWithOrientation(pngData.Bytes(), o) }},
		{"WebP", webp, func(o int, _ bool) []byte { return testenv.WebPWithOrientation(webp, 600, 400, o) }},
	} {
		stored, err := Decode(c.stored, DefaultMaxPixels)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range testenv.Orientations {
			for _, bigEndian := range []bool{false, true} {
				img, err := Decode(c.tag(o, bigEndian), DefaultMaxPixels)
				if err != nil {
					t.Fatalf("%s, orientation %d: %v", c.format, o, err)
				}
				want := testenv.Orient(stored, o)
				if got := rgbaOf(img); got.Rect.Size() != want.Rect.Size() || !bytes.Equal(got.Pix, want.Pix) {
					t.Errorf("%s, orientation %d (big-endian %v): %v image not shown as a viewer shows it", c.format, o, bigEndian, img.Bounds().Size())
				}
			}
		}
	}
}

func TestTIFFOrientation(t *testing.T) {
	le, be := testenv.TIFF(6, false), testenv.TIFF(8, true)
	edit := func(b []byte, at int, v ...byte) []byte {
		b = bytes.Clone(b)
		copy(b[at:], v)
		return b
	}
	for _, c := range []struct {
		name string
		tiff []byte
		want int
	}{
		{"little-endian", le, 6},
		{"big-endian", be, 8},
		{"empty", nil, 1},
		{"header only", le[:8], 1},
		{"cut entry", le[:20], 1},
		{"byte order unknown", edit(le, 0, 'X', 'X'), 1},
		{"not 42", edit(le, 2, 43), 1},
		{"IFD past the end", edit(le, 4, 0xff, 0xff, 0xff, 0xff), 1},
		{"IFD at the last byte", edit(le, 4, byte(len(le)-1)), 1},
		{"more entries than bytes", edit(le, 8, 0xff, 0xff), 6},
		{"no entries", edit(le, 8, 0, 0), 1},
		{"other tag", edit(le, 10, 0x13), 1},
		{"LONG, not SHORT", edit(le, 12, 4), 1},
		{"two values", edit(le, 14, 2), 1},
		{"zero", edit(le, 18, 0), 1},
		{"nine", edit(le, 18, 9), 1},
		{"each value", edit(le, 18, 3), 3},
	} {
		if got := tiffOrientation(c.tiff); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
}

// Hostile headers neither panic nor give a value outside 1-8, and no
// offset sends the parser past the data.
func FuzzOrientation(f *testing.F) {
	var jpg bytes.Buffer
	if err := jpeg.Encode(&jpg, quadrants(16, 16), nil); err != nil {
		f.Fatal(err)
	}
	var pngData bytes.Buffer
	if err := png.Encode(&pngData, quadrants(16, 16)); err != nil {
		f.Fatal(err)
	}
	for _, o := range testenv.Orientations {
		f.Add(testenv.WithOrientation(jpg.Bytes(), o, o%2 == 0))
		f.Add(testenv.PNGWithOrientation(pngData.Bytes(), o))
		f.Add(testenv.TIFF(o, o%2 == 1))
	}
	webp, err := os.ReadFile("testdata/small-600x400.webp")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(testenv.WebPWithOrientation(webp, 600, 400, 5))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, format := range []string{"jpeg", "png", "webp"} {
			if o := orientation(format, data); o < 1 || o > 8 {
				t.Fatalf("%s: orientation %d", format, o)
			}
		}
		if o := tiffOrientation(data); o < 1 || o > 8 {
			t.Fatalf("TIFF: orientation %d", o)
		}
	})
}

// A panorama decoded to its centred window gives the tensor of the whole
// image decoded by image/jpeg.
func TestTensorOfWindowIsTensorOfWhole(t *testing.T) {
	img := quadrants(1800, 500)
	for x := range 1800 {
		for y := range 500 {
			img.Pix[img.PixOffset(x, y)+2] = uint8(x * y)
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	whole, err := jpeg.Decode(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	part, err := Decode(buf.Bytes(), DefaultMaxPixels)
	if err != nil {
		t.Fatal(err)
	}
	if part.Bounds().Size() != image.Pt(1000, 500) {
		t.Fatalf("decoded %v, want the centred 1000×500", part.Bounds())
	}
	p := ForCrop(224)
	a, b := make([]float32, p.TensorLen()), make([]float32, p.TensorLen())
	if err := p.Tensor(whole, a, nil); err != nil {
		t.Fatal(err)
	}
	if err := p.Tensor(part, b, nil); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a, b) {
		t.Error("the window's tensor differs from the whole image's")
	}
}

func rgbaOf(img image.Image) *image.RGBA {
	b := img.Bounds()
	out := image.NewRGBA(image.Rect(0, 0, b.Dx(), b.Dy()))
	for y := range b.Dy() {
		for x := range b.Dx() {
			out.Set(x, y, img.At(b.Min.X+x, b.Min.Y+y))
		}
	}
	return out
}

// reduce averages f×f squares of the window, the last row and column over
// the pixels they have.
func TestReduce(t *testing.T) {
	// A 5×3 grey ramp: pixel (x, y) is 10x + 100y.
	img := image.NewGray(image.Rect(0, 0, 5, 3))
	for y := range 3 {
		for x := range 5 {
			img.SetGray(x, y, color.Gray{uint8(10*x + 100*y)})
		}
	}
	for _, c := range []struct {
		win  image.Rectangle
		f    int
		want []uint8 // grey values, row by row
	}{
		{image.Rect(0, 0, 5, 3), 1, []uint8{0, 10, 20, 30, 40, 100, 110, 120, 130, 140, 200, 210, 220, 230, 240}},
		{image.Rect(0, 0, 5, 3), 2, []uint8{55, 75, 90, 205, 225, 240}},
		{image.Rect(0, 0, 5, 3), 3, []uint8{110, 135}},
		{image.Rect(1, 1, 4, 3), 2, []uint8{165, 180}},
		{image.Rect(3, 0, 9, 9), 5, []uint8{135}}, // clipped to the image
	} {
		got := reduce(img, c.win, c.f)
		var grey []uint8
		for i := 0; i < len(got.Pix); i += 4 {
			if got.Pix[i] != got.Pix[i+1] || got.Pix[i] != got.Pix[i+2] || got.Pix[i+3] != 255 {
				t.Fatalf("window %v at 1/%d: pixel %v is not opaque grey", c.win, c.f, got.Pix[i:i+4])
			}
			grey = append(grey, got.Pix[i])
		}
		if !slices.Equal(grey, c.want) {
			t.Errorf("window %v at 1/%d: %v, want %v", c.win, c.f, grey, c.want)
		}
	}
}

// opaque hides an image's concrete type, so that reduce takes its
// general path.
type opaque struct{ image.Image }

// Averaging Y, Cb and Cr and converting once gives what converting every
// pixel and averaging gives, within rounding, for every subsampling, on a
// sub-image whose origin is odd, in windows that cut squares short, where
// the conversion does not clamp.
func TestReduceYCbCrIsReduce(t *testing.T) {
	for _, ratio := range []image.YCbCrSubsampleRatio{
		image.YCbCrSubsampleRatio444, image.YCbCrSubsampleRatio422, image.YCbCrSubsampleRatio420,
		image.YCbCrSubsampleRatio440, image.YCbCrSubsampleRatio411, image.YCbCrSubsampleRatio410,
	} {
		// Values no conversion clamps: Y 40-209, chroma within 20 of grey.
		whole := image.NewYCbCr(image.Rect(0, 0, 61, 47), ratio)
		for i := range whole.Y {
			whole.Y[i] = uint8(40 + (i*37+i/61*11)%170)
		}
		for i := range whole.Cb {
			whole.Cb[i], whole.Cr[i] = uint8(128+i%41-20), uint8(128+i%29-14)
		}
		img := whole.SubImage(image.Rect(3, 5, 60, 46)).(*image.YCbCr)
		for _, c := range []struct {
			win image.Rectangle
			f   int
		}{
			{img.Rect, 1}, {img.Rect, 2}, {img.Rect, 4}, {image.Rect(7, 9, 50, 40), 3}, {img.Rect, 13},
		} {
			got, want := reduce(img, c.win, c.f), reduce(opaque{img}, c.win, c.f)
			if got.Rect != want.Rect {
				t.Fatalf("%v, window %v at 1/%d: %v, want %v", ratio, c.win, c.f, got.Rect, want.Rect)
			}
			worst := 0
			for i := range got.Pix {
				worst = max(worst, abs(int(got.Pix[i])-int(want.Pix[i])))
			}
			if worst > 2 {
				t.Errorf("%v, window %v at 1/%d: a channel differs by %d", ratio, c.win, c.f, worst)
			}
		}
	}
}
