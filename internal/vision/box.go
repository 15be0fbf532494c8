package vision

import (
	"image"
	"image/color"
)

// box averages a window of an image over f×f squares as pixels arrive, in
// any order (an interlaced PNG sends them in seven passes), holding only
// the sums: 16 bytes per output pixel.
type box struct {
	win  image.Rectangle // of the source, in its pixels
	f    int
	w, h int      // output size: the window's, divided by f, rounded up
	sum  []uint32 // premultiplied R, G, B, A, 16-bit, per output pixel
}

func newBox(win image.Rectangle, f int) *box {
	w, h := ceilDiv(win.Dx(), f), ceilDiv(win.Dy(), f)
	return &box{win: win, f: f, w: w, h: h, sum: make([]uint32, 4*w*h)}
}

// row returns where source row y's sums go, or nil if the row is outside
// the window.
func (b *box) row(y int) []uint32 {
	if y < b.win.Min.Y || y >= b.win.Max.Y {
		return nil
	}
	i := 4 * b.w * ((y - b.win.Min.Y) / b.f)
	return b.sum[i : i+4*b.w]
}

// add adds source pixel x of a row from row(y), premultiplied 16-bit.
// f² sums of 0xffff fit a uint32 while f < 256: sides are at most
// MaxSide, so f = side/MinSide is under 128.
func (b *box) add(row []uint32, x int, c color.RGBA64) {
	if x < b.win.Min.X || x >= b.win.Max.X {
		return
	}
	s := row[4*((x-b.win.Min.X)/b.f):]
	s[0] += uint32(c.R)
	s[1] += uint32(c.G)
	s[2] += uint32(c.B)
	s[3] += uint32(c.A)
}

// image divides the sums by the pixels each square covers (fewer on the
// last row and column) and returns the result.
func (b *box) image() *image.RGBA {
	out := image.NewRGBA(image.Rect(0, 0, b.w, b.h))
	for y := range b.h {
		rows := min(b.f, b.win.Dy()-y*b.f)
		for x := range b.w {
			n := uint32(rows * min(b.f, b.win.Dx()-x*b.f))
			s, d := b.sum[4*(y*b.w+x):], out.Pix[4*(y*b.w+x):]
			for c := range 4 {
				d[c] = uint8((s[c] + n/2) / n >> 8)
			}
		}
	}
	return out
}

// reduce averages the window of a decoded image over f×f squares.
func reduce(img image.Image, win image.Rectangle, f int) *image.RGBA {
	win = win.Intersect(img.Bounds())
	b := newBox(win, f)
	switch m := img.(type) {
	case *image.YCbCr:
		return reduceYCbCr(m, win, f)
	case *image.Gray:
		for y := win.Min.Y; y < win.Max.Y; y++ {
			row := b.row(y)
			for x := win.Min.X; x < win.Max.X; x++ {
				v := uint16(m.Pix[m.PixOffset(x, y)]) * 0x101
				b.add(row, x, color.RGBA64{v, v, v, 0xffff})
			}
		}
	case image.RGBA64Image:
		for y := win.Min.Y; y < win.Max.Y; y++ {
			row := b.row(y)
			for x := win.Min.X; x < win.Max.X; x++ {
				b.add(row, x, m.RGBA64At(x, y))
			}
		}
	default:
		for y := win.Min.Y; y < win.Max.Y; y++ {
			row := b.row(y)
			for x := win.Min.X; x < win.Max.X; x++ {
				r, g, bl, a := img.At(x, y).RGBA()
				b.add(row, x, color.RGBA64{uint16(r), uint16(g), uint16(bl), uint16(a)})
			}
		}
	}
	return b.image()
}

// reduceYCbCr is reduce for what JPEGs decode to, at up to 50 MP: it
// averages Y, Cb and Cr over each square, reading the planes directly,
// and converts each average to RGB, where reduce converts every pixel
// and averages the results. The conversion being affine, the two differ
// only by rounding and where it clamps.
func reduceYCbCr(m *image.YCbCr, win image.Rectangle, f int) *image.RGBA {
	var hs, vs int // chroma subsampling, as shifts of x and y
	switch m.SubsampleRatio {
	case image.YCbCrSubsampleRatio422:
		hs = 1
	case image.YCbCrSubsampleRatio420:
		hs, vs = 1, 1
	case image.YCbCrSubsampleRatio440:
		vs = 1
	case image.YCbCrSubsampleRatio411:
		hs = 2
	case image.YCbCrSubsampleRatio410:
		hs, vs = 2, 1
	}
	w, h := ceilDiv(win.Dx(), f), ceilDiv(win.Dy(), f)
	out := image.NewRGBA(image.Rect(0, 0, w, h))
	sums := make([]uint32, 3*w)
	for oy := range h {
		clear(sums)
		y0, y1 := win.Min.Y+oy*f, min(win.Min.Y+(oy+1)*f, win.Max.Y)
		for y := y0; y < y1; y++ {
			yRow := (y-m.Rect.Min.Y)*m.YStride - m.Rect.Min.X
			cRow := (y>>vs - m.Rect.Min.Y>>vs) * m.CStride
			for ox := range w {
				x0, x1 := win.Min.X+ox*f, min(win.Min.X+(ox+1)*f, win.Max.X)
				var sy, scb, scr uint32
				for x := x0; x < x1; x++ {
					ci := cRow + x>>hs - m.Rect.Min.X>>hs
					sy += uint32(m.Y[yRow+x])
					scb += uint32(m.Cb[ci])
					scr += uint32(m.Cr[ci])
				}
				s := sums[3*ox:]
				s[0] += sy
				s[1] += scb
				s[2] += scr
			}
		}
		for ox := range w {
			n := uint32((y1 - y0) * (min(win.Min.X+(ox+1)*f, win.Max.X) - (win.Min.X + ox*f)))
			s := sums[3*ox:]
			r, g, bl := color.YCbCrToRGB(uint8((s[0]+n/2)/n), uint8((s[1]+n/2)/n), uint8((s[2]+n/2)/n))
			d := out.Pix[out.PixOffset(ox, oy):]
			d[0], d[1], d[2], d[3] = r, g, bl, 255
		}
	}
	return out
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }
