package scaledjpeg

import (
	"bytes"
	"image"
	"image/draw"
	"image/jpeg"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testdata holds image/jpeg's own test images: baseline, progressive,
// every chroma subsampling it reads, restart intervals, grey, RGB, CMYK,
// a separate DC progression and a truncated file.
func testFiles(t *testing.T) map[string][]byte {
	t.Helper()
	paths, err := filepath.Glob("testdata/*.jpeg")
	if err != nil || len(paths) < 20 {
		t.Fatalf("testdata: %d files, %v", len(paths), err)
	}
	files := map[string][]byte{}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		files[filepath.Base(p)] = data
	}
	return files
}

func rgba(img image.Image) *image.RGBA {
	out := image.NewRGBA(img.Bounds())
	draw.Draw(out, out.Rect, img, img.Bounds().Min, draw.Src)
	return out
}

// At scale 1 on the whole image the decoder is image/jpeg.
func TestFullScaleIsImageJPEG(t *testing.T) {
	for name, data := range testFiles(t) {
		want, wantErr := jpeg.Decode(bytes.NewReader(data))
		got, err := Decode(bytes.NewReader(data), 1, image.Rect(0, 0, 1<<20, 1<<20))
		if (err != nil) != (wantErr != nil) {
			t.Errorf("%s: err %v, image/jpeg's %v", name, err, wantErr)
			continue
		}
		if err != nil {
			continue
		}
		if got.Bounds() != want.Bounds() {
			t.Errorf("%s: bounds %v, want %v", name, got.Bounds(), want.Bounds())
			continue
		}
		if g, w := rgba(got), rgba(want); !bytes.Equal(g.Pix, w.Pix) {
			t.Errorf("%s: pixels differ from image/jpeg's", name)
		}
	}
}

// A window is exactly that part of the whole image, at every scale.
func TestWindowIsPartOfWhole(t *testing.T) {
	for name, data := range testFiles(t) {
		if strings.Contains(name, "truncated") {
			continue
		}
		for _, scale := range []int{1, 2, 4, 8} {
			whole, err := Decode(bytes.NewReader(data), scale, image.Rect(0, 0, 1<<20, 1<<20))
			if err != nil {
				t.Fatalf("%s at 1/%d: %v", name, scale, err)
			}
			for _, w := range []image.Rectangle{
				image.Rect(37, 21, 101, 80), // odd edges, inside
				image.Rect(0, 50, 150, 103), // bottom half, to the edges
				image.Rect(140, 0, 999, 9),  // sticking out
			} {
				part, err := Decode(bytes.NewReader(data), scale, w)
				if err != nil {
					t.Fatalf("%s at 1/%d, window %v: %v", name, scale, w, err)
				}
				wantRect := image.Rect(w.Min.X/scale, w.Min.Y/scale, ceilDiv(min(w.Max.X, 150), scale), ceilDiv(min(w.Max.Y, 103), scale))
				if part.Bounds() != wantRect {
					t.Errorf("%s at 1/%d, window %v: bounds %v, want %v", name, scale, w, part.Bounds(), wantRect)
					continue
				}
				p, all := rgba(part), rgba(whole)
				for y := wantRect.Min.Y; y < wantRect.Max.Y; y++ {
					if !bytes.Equal(p.Pix[p.PixOffset(wantRect.Min.X, y):p.PixOffset(wantRect.Max.X, y)],
						all.Pix[all.PixOffset(wantRect.Min.X, y):all.PixOffset(wantRect.Max.X, y)]) {
						t.Errorf("%s at 1/%d, window %v: row %d differs from the whole image's", name, scale, w, y)
						break
					}
				}
			}
		}
	}
}

// Scaled output is the image averaged over scale×scale squares, within
// what separates a low-pass filter from a box. Planes are compared as
// stored: a subsampled chroma plane is scaled like the others.
func TestScaledIsCloseToAveraged(t *testing.T) {
	for name, data := range testFiles(t) {
		if strings.Contains(name, "truncated") {
			continue
		}
		full, err := jpeg.Decode(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		for _, scale := range []int{2, 4, 8} {
			img, err := Decode(bytes.NewReader(data), scale, image.Rect(0, 0, 1<<20, 1<<20))
			if err != nil {
				t.Fatalf("%s at 1/%d: %v", name, scale, err)
			}
			for i, p := range planes(img) {
				if name == "video-001.rgb.jpeg" && i > 0 {
					// G and B are stored at half resolution, which
					// scaling keeps (as libjpeg's does), and carry detail
					// that Cb and Cr do not: they lose more than an
					// average over their full-size pixels would.
					continue
				}
				ref := planes(full)[i]
				mean, worst := compareAveraged(ref, p, scale)
				t.Logf("%s at 1/%d, plane %d: mean difference %.2f, largest %d", name, scale, i, mean, worst)
				if mean > 5 {
					t.Errorf("%s at 1/%d, plane %d: mean difference from the averaged image %.2f, want ≤ 5", name, scale, i, mean)
				}
			}
		}
	}
}

// plane is one channel of an image: w×h bytes, stride apart.
type plane struct {
	pix           []byte
	w, h, stride  int
	channelStride int // bytes between a row's samples
}

func planes(img image.Image) []plane {
	switch m := img.(type) {
	case *image.YCbCr:
		cw, ch := m.Rect.Dx(), m.Rect.Dy()
		switch m.SubsampleRatio {
		case image.YCbCrSubsampleRatio420:
			cw, ch = (cw+1)/2, (ch+1)/2
		case image.YCbCrSubsampleRatio422:
			cw = (cw + 1) / 2
		case image.YCbCrSubsampleRatio440:
			ch = (ch + 1) / 2
		case image.YCbCrSubsampleRatio411:
			cw = (cw + 3) / 4
		case image.YCbCrSubsampleRatio410:
			cw, ch = (cw+3)/4, (ch+1)/2
		}
		y0, c0 := m.YOffset(m.Rect.Min.X, m.Rect.Min.Y), m.COffset(m.Rect.Min.X, m.Rect.Min.Y)
		return []plane{
			{m.Y[y0:], m.Rect.Dx(), m.Rect.Dy(), m.YStride, 1},
			{m.Cb[c0:], cw, ch, m.CStride, 1},
			{m.Cr[c0:], cw, ch, m.CStride, 1},
		}
	case *image.Gray:
		return []plane{{m.Pix[m.PixOffset(m.Rect.Min.X, m.Rect.Min.Y):], m.Rect.Dx(), m.Rect.Dy(), m.Stride, 1}}
	default:
		r := rgba(img)
		var ps []plane
		for c := range 3 {
			ps = append(ps, plane{r.Pix[c:], r.Rect.Dx(), r.Rect.Dy(), r.Stride, 4})
		}
		return ps
	}
}

// compareAveraged compares p with ref averaged over scale×scale squares,
// whole squares only: the last row and column of p also cover the
// encoder's padding.
func compareAveraged(ref, p plane, scale int) (mean float64, worst int) {
	at := func(q plane, x, y int) int { return int(q.pix[y*q.stride+x*q.channelStride]) }
	var sum, n int
	for y := 0; y < ref.h/scale; y++ {
		for x := 0; x < ref.w/scale; x++ {
			avg := 0
			for dy := range scale {
				for dx := range scale {
					avg += at(ref, x*scale+dx, y*scale+dy)
				}
			}
			avg = (avg + scale*scale/2) / (scale * scale)
			diff := abs(at(p, x, y) - avg)
			sum, n, worst = sum+diff, n+1, max(worst, diff)
		}
	}
	return float64(sum) / float64(max(n, 1)), worst
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

func TestBadScale(t *testing.T) {
	for _, s := range []int{0, 3, 16, -1} {
		if _, err := Decode(bytes.NewReader(nil), s, image.Rect(0, 0, 1, 1)); err == nil {
			t.Errorf("scale %d accepted", s)
		}
	}
}

// Whatever image/jpeg decodes, Decode decodes to the same pixels at scale
// 1, and no input makes it panic at any scale or window.
func FuzzDecode(f *testing.F) {
	paths, err := filepath.Glob("testdata/*.jpeg")
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
		cfg, err := jpeg.DecodeConfig(bytes.NewReader(data))
		if err != nil || cfg.Width*cfg.Height > 1e6 || cfg.Width == 0 || cfg.Height == 0 {
			return // too slow to fuzz, or an image with no pixels, which has no window
		}
		for _, scale := range []int{2, 4, 8} {
			Decode(bytes.NewReader(data), scale, image.Rect(cfg.Width/3, cfg.Height/4, cfg.Width, cfg.Height/2+1))
		}
		want, err := jpeg.Decode(bytes.NewReader(data))
		if err != nil {
			return
		}
		got, err := Decode(bytes.NewReader(data), 1, want.Bounds())
		if err != nil {
			t.Fatalf("image/jpeg decodes it, Decode says %v", err)
		}
		if g, w := rgba(got), rgba(want); g.Rect != w.Rect || !bytes.Equal(g.Pix, w.Pix) {
			t.Fatal("pixels differ from image/jpeg's")
		}
	})
}
