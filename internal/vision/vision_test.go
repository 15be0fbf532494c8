package vision

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math"
	"testing"
)

func encodePNG(t *testing.T, img image.Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func solid(w, h int, c color.Color) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, c)
		}
	}
	return img
}

// pixelBomb is a valid PNG header claiming w×h pixels with almost no data.
func pixelBomb(t *testing.T, w, h uint32) []byte {
	data := encodePNG(t, solid(1, 1, color.White))
	// IHDR's width and height follow the 8-byte signature, length and type.
	binary.BigEndian.PutUint32(data[16:], w)
	binary.BigEndian.PutUint32(data[20:], h)
	binary.BigEndian.PutUint32(data[29:], crc32.ChecksumIEEE(data[12:29]))
	return data
}

func TestDecode(t *testing.T) {
	var jpg bytes.Buffer
	if err := jpeg.Encode(&jpg, solid(64, 48, color.RGBA{200, 10, 10, 255}), nil); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		data []byte
		want error
	}{
		"jpeg":       {jpg.Bytes(), nil},
		"png":        {encodePNG(t, solid(3, 5, color.Black)), nil},
		"empty":      {nil, ErrNotImage},
		"text":       {[]byte("hello, I am not a picture"), ErrNotImage},
		"html":       {[]byte("<html><body>x</body></html>"), ErrNotImage},
		"cut header": {jpg.Bytes()[:100], ErrCorrupt},
		"cut data":   {jpg.Bytes()[:jpg.Len()-40], ErrCorrupt},
		"bomb":       {pixelBomb(t, 100000, 100000), ErrTooLarge},
		"zero":       {pixelBomb(t, 0, 10), ErrCorrupt},
	} {
		img, err := Decode(c.data, DefaultMaxPixels)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: err = %v, want %v", name, err, c.want)
		}
		if c.want == nil && img == nil {
			t.Errorf("%s: no image", name)
		}
	}
	if _, err := Inspect(encodePNG(t, solid(10, 10, color.Black)), 99); !errors.Is(err, ErrTooLarge) {
		t.Errorf("100 pixels with a limit of 99: %v", err)
	}
}

func TestResized(t *testing.T) {
	for _, c := range []struct{ w, h, short, ww, wh int }{
		{64, 64, 256, 256, 256},
		{768, 576, 256, 341, 256},
		{773, 512, 256, 387, 256}, // 386.5 rounds up
		{352, 448, 256, 256, 326},
		{1, 1000, 256, 256, 256000},
	} {
		if w, h := resized(c.w, c.h, c.short); w != c.ww || h != c.wh {
			t.Errorf("resized(%d, %d, %d) = %d×%d, want %d×%d", c.w, c.h, c.short, w, h, c.ww, c.wh)
		}
	}
}

func TestTensor(t *testing.T) {
	p := ForCrop(224)
	if p.Resize != 256 || p.TensorLen() != 3*224*224 {
		t.Fatalf("ForCrop(224) = %+v", p)
	}
	norm := func(c int, v uint8) float32 { return (float32(v)/255 - p.Mean[c]) / p.Std[c] }

	// A solid colour comes out as three constant planes.
	dst := make([]float32, p.TensorLen())
	if err := p.Tensor(solid(64, 64, color.RGBA{255, 128, 0, 255}), dst, nil); err != nil {
		t.Fatal(err)
	}
	plane := 224 * 224
	for c, v := range []uint8{255, 128, 0} {
		for _, i := range []int{0, plane / 2, plane - 1} {
			if got := dst[c*plane+i]; math.Abs(float64(got-norm(c, v))) > 1e-5 {
				t.Fatalf("channel %d pixel %d = %v, want %v", c, i, got, norm(c, v))
			}
		}
	}

	// 512×256, red left half, blue right: the centre crop spans the border.
	img := solid(512, 256, color.RGBA{0, 0, 255, 255})
	for y := range 256 {
		for x := range 256 {
			img.Set(x, y, color.RGBA{255, 0, 0, 255})
		}
	}
	if err := p.Tensor(img, dst, p.NewScratch()); err != nil {
		t.Fatal(err)
	}
	row := 100 * 224
	if dst[row] != norm(0, 255) || dst[2*plane+row] != norm(2, 0) {
		t.Errorf("left edge of the crop is not red: R %v B %v", dst[row], dst[2*plane+row])
	}
	if dst[row+223] != norm(0, 0) || dst[2*plane+row+223] != norm(2, 255) {
		t.Errorf("right edge of the crop is not blue: R %v B %v", dst[row+223], dst[2*plane+row+223])
	}

	if err := p.Tensor(img, make([]float32, 10), nil); err == nil {
		t.Error("a short buffer was accepted")
	}
}
