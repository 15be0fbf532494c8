package vision

import (
	"bytes"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// decodePNG reads what image/png reads, pixel for pixel, then averages as
// reduce averages image/png's image: PngSuite's colour types and bit
// depths, transparency, interlacing, and Go's own test images.
func TestDecodePNGIsImagePNG(t *testing.T) {
	paths, err := filepath.Glob("testdata/png/*.png")
	if err != nil || len(paths) < 40 {
		t.Fatalf("testdata/png: %d files, %v", len(paths), err)
	}
	for _, path := range paths {
		name := filepath.Base(path)
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		want, wantErr := png.Decode(bytes.NewReader(data))
		if wantErr != nil {
			if _, err := decodePNG(data, image.Rect(0, 0, MaxSide, MaxSide), 1); err == nil {
				t.Errorf("%s: decoded, but image/png says %v", name, wantErr)
			}
			continue
		}
		b := want.Bounds()
		for _, c := range []struct {
			win image.Rectangle
			f   int
		}{
			{b, 1},
			{b, 2},
			{b, 3},
			{image.Rect(3, 5, b.Dx()-2, b.Dy()-7), 2},
			{image.Rect(1, 0, b.Dx(), b.Dy()/2), 5},
		} {
			if c.win.Empty() {
				continue // the image is too small for it
			}
			got, err := decodePNG(data, c.win, c.f)
			if err != nil {
				t.Errorf("%s, window %v at 1/%d: %v", name, c.win, c.f, err)
				continue
			}
			if w := reduce(want, c.win, c.f); got.Rect != w.Rect || !bytes.Equal(got.Pix, w.Pix) {
				t.Errorf("%s, window %v at 1/%d: differs from image/png's image averaged", name, c.win, c.f)
			}
		}
	}
}

func TestDecodePNGRefusesCorruptData(t *testing.T) {
	data, err := os.ReadFile("testdata/png/basn6a16.png")
	if err != nil {
		t.Fatal(err)
	}
	all := image.Rect(0, 0, 32, 32)
	cut := func(n int) []byte { return data[:n] }
	flip := func(i int) []byte {
		d := bytes.Clone(data)
		d[i] ^= 0x40
		return d
	}
	for name, d := range map[string][]byte{
		"no signature":      data[8:],
		"cut in the header": cut(20),
		"cut in the pixels": cut(len(data) / 2),
		"bad header CRC":    flip(29),
		"bad pixel byte":    flip(len(data) / 2),
		"no end":            cut(len(data) - 12),
	} {
		if _, err := decodePNG(d, all, 1); err == nil {
			t.Errorf("%s: decoded", name)
		} else if !strings.HasPrefix(err.Error(), "png: ") {
			t.Errorf("%s: %v does not say it is the PNG", name, err)
		}
	}
}

// Whatever image/png decodes, decodePNG decodes to the same pixels, and no
// input makes it panic.
func FuzzDecodePNG(f *testing.F) {
	paths, err := filepath.Glob("testdata/png/*.png")
	if err != nil {
		f.Fatal(err)
	}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := png.DecodeConfig(bytes.NewReader(data))
		if err != nil || cfg.Width*cfg.Height > 1e6 {
			return
		}
		all := image.Rect(0, 0, cfg.Width, cfg.Height)
		decodePNG(data, image.Rect(cfg.Width/3, 0, cfg.Width, cfg.Height/2+1), 3)
		want, err := png.Decode(bytes.NewReader(data))
		if err != nil {
			return
		}
		got, err := decodePNG(data, all, 1)
		if err != nil {
			t.Fatalf("image/png decodes it, decodePNG says %v", err)
		}
		if w := reduce(want, all, 1); got.Rect != w.Rect || !bytes.Equal(got.Pix, w.Pix) {
			t.Fatal("pixels differ from image/png's")
		}
	})
}
