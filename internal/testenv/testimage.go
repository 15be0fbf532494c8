// This file makes the images tests need and no encoder here
// writes: progressive JPEGs of any size, large PNGs written a row at a
// time, and photos tagged with an EXIF orientation.

package testenv

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"image"
	"image/color"
	"io"
	"math/bits"
)

// ProgressiveJPEG writes a progressive (SOF2) JPEG of w×h pixels, 4:4:4,
// whose 8×8 blocks are flat: block (bx, by) of component c (Y, Cb, Cr) has
// the value dc(c, bx, by). The file is small for its pixels, which is the
// point: a decoder that keeps every coefficient of a progressive image
// needs 12 bytes a pixel for it. w and h must be multiples of 8.
func ProgressiveJPEG(w io.Writer, width, height int, dc func(c, bx, by int) uint8) error {
	if width%8 != 0 || height%8 != 0 {
		return fmt.Errorf("progressive JPEG: %d×%d is not a multiple of 8", width, height)
	}
	return FlatJPEG(w, JPEGLayout{Width: width, Height: height, Sampling: [][2]int{{1, 1}, {1, 1}, {1, 1}}, Progressive: true, AdobeTransform: -1}, dc)
}

// JPEGLayout is how FlatJPEG lays out its image.
type JPEGLayout struct {
	Width, Height int
	// Sampling holds each component's horizontal and vertical sampling
	// factors (1 to 4): one component is grey, three YCbCr (or RGB, with
	// AdobeTransform 0), four CMYK (AdobeTransform 0) or YCCK (2).
	Sampling    [][2]int
	Progressive bool
	// AdobeTransform, if not -1, is written in an Adobe APP14 segment
	// instead of the JFIF one.
	AdobeTransform int
}

// FlatJPEG writes a JPEG, baseline (SOF0) or progressive (SOF2), of any
// layout image/jpeg reads, whose 8×8 blocks are flat: block (bx, by) of
// component c, in that component's own grid of blocks, has the value
// dc(c, bx, by). A baseline image is one interleaved scan; a progressive
// one a DC scan of every component and an AC scan per component saying,
// in end-of-band runs, that every other coefficient is zero.
func FlatJPEG(w io.Writer, l JPEGLayout, dc func(c, bx, by int) uint8) error {
	n := len(l.Sampling)
	if l.Width <= 0 || l.Height <= 0 || l.Width > 65535 || l.Height > 65535 || n < 1 || n > 4 {
		return fmt.Errorf("flat JPEG: %d×%d pixels, %d components", l.Width, l.Height, n)
	}
	hmax, vmax := 1, 1
	for _, s := range l.Sampling {
		if s[0] < 1 || s[0] > 4 || s[1] < 1 || s[1] > 4 {
			return fmt.Errorf("flat JPEG: sampling factors %v", s)
		}
		hmax, vmax = max(hmax, s[0]), max(vmax, s[1])
	}
	bw := bufio.NewWriter(w)
	seg := func(marker byte, body ...byte) {
		bw.Write([]byte{0xff, marker, byte((len(body) + 2) >> 8), byte(len(body) + 2)})
		bw.Write(body)
	}
	bw.Write([]byte{0xff, 0xd8})
	if l.AdobeTransform >= 0 {
		seg(0xee, 'A', 'd', 'o', 'b', 'e', 0, 100, 0, 0, 0, 0, byte(l.AdobeTransform))
	} else {
		seg(0xe0, 'J', 'F', 'I', 'F', 0, 1, 1, 0, 0, 1, 0, 1, 0, 0)
	}
	// Quantisation 8 for DC makes a coefficient the block's value - 128.
	dqt := make([]byte, 65)
	for i := 1; i < 65; i++ {
		dqt[i] = 8
	}
	seg(0xdb, dqt...)
	sof := []byte{8, byte(l.Height >> 8), byte(l.Height), byte(l.Width >> 8), byte(l.Width), byte(n)}
	for c, s := range l.Sampling {
		sof = append(sof, byte(c+1), byte(s[0]<<4|s[1]), 0)
	}
	if l.Progressive {
		seg(0xc2, sof...)
	} else {
		seg(0xc0, sof...)
	}
	// DC table 0: categories 0-11, four-bit codes 0000-1011. AC table 0:
	// symbols 0x00-0xe0, four-bit codes 0000-1110: in a baseline scan 0x00
	// is the end of the block; in a progressive one, r<<4 an EOBRUN.
	dht := []byte{0x00, 0, 0, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	for v := range 12 {
		dht = append(dht, byte(v))
	}
	dht = append(dht, 0x10, 0, 0, 0, 15, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
	for r := range 15 {
		dht = append(dht, byte(r<<4))
	}
	seg(0xc4, dht...)

	e := entropy{w: bw}
	pred := make([]int, n)
	putDC := func(c, bx, by int) {
		v := int(dc(c, bx, by)) - 128
		diff := v - pred[c]
		pred[c] = v
		cat := bits.Len(uint(abs(diff)))
		e.put(uint32(cat), 4)
		if cat > 0 {
			if diff < 0 {
				diff += 1<<cat - 1
			}
			e.put(uint32(diff), cat)
		}
	}
	// A scan of one component covers its own blocks (A.2.2); one of
	// several, whole MCUs of each one's h×v blocks (A.2.3).
	sos := []byte{byte(n)}
	for c := range n {
		sos = append(sos, byte(c+1), 0x00)
	}
	if l.Progressive {
		seg(0xda, append(sos, 0, 0, 0)...)
	} else {
		seg(0xda, append(sos, 0, 63, 0)...)
	}
	endOfBlock := func() {
		if !l.Progressive {
			e.put(0, 4)
		}
	}
	if n == 1 {
		for by := range ceilDiv(l.Height, 8) {
			for bx := range ceilDiv(l.Width, 8) {
				putDC(0, bx, by)
				endOfBlock()
			}
		}
	} else {
		for my := range ceilDiv(l.Height, 8*vmax) {
			for mx := range ceilDiv(l.Width, 8*hmax) {
				for c, s := range l.Sampling {
					for j := range s[1] {
						for i := range s[0] {
							putDC(c, mx*s[0]+i, my*s[1]+j)
							endOfBlock()
						}
					}
				}
			}
		}
	}
	e.flush()
	if l.Progressive {
		for c, s := range l.Sampling {
			seg(0xda, 1, byte(c+1), 0x00, 1, 63, 0)
			blocks := ceilDiv(ceilDiv(l.Width*s[0], hmax), 8) * ceilDiv(ceilDiv(l.Height*s[1], vmax), 8)
			if n == 1 {
				blocks = ceilDiv(l.Width, 8) * ceilDiv(l.Height, 8)
			}
			for left := blocks; left > 0; {
				run := min(left, 1<<15-1)
				r := bits.Len(uint(run)) - 1
				e.put(uint32(r), 4)
				e.put(uint32(run-1<<r), r)
				left -= run
			}
			e.flush()
		}
	}
	bw.Write([]byte{0xff, 0xd9})
	return bw.Flush()
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// entropy writes a scan's bits, stuffing a zero byte after each 0xff.
type entropy struct {
	w    *bufio.Writer
	acc  uint64
	nacc int
}

func (e *entropy) put(v uint32, n int) {
	e.acc = e.acc<<n | uint64(v)&(1<<n-1)
	e.nacc += n
	for e.nacc >= 8 {
		b := byte(e.acc >> (e.nacc - 8))
		e.w.WriteByte(b)
		if b == 0xff {
			e.w.WriteByte(0)
		}
		e.nacc -= 8
	}
}

// flush pads the last byte with ones, as the standard says.
func (e *entropy) flush() {
	if e.nacc > 0 {
		e.put(1<<(8-e.nacc)-1, 8-e.nacc)
	}
	e.acc, e.nacc = 0, 0
}

// BlockColours returns a ProgressiveJPEG dc function that draws img
// scaled to bw×bh blocks (nearest neighbour), converted to YCbCr.
func BlockColours(img image.Image, bw, bh int) func(c, bx, by int) uint8 {
	b := img.Bounds()
	ycc := make([][3]uint8, bw*bh)
	for y := range bh {
		for x := range bw {
			r, g, bl, _ := img.At(b.Min.X+x*b.Dx()/bw, b.Min.Y+y*b.Dy()/bh).RGBA()
			yy, cb, cr := color.RGBToYCbCr(uint8(r>>8), uint8(g>>8), uint8(bl>>8))
			ycc[y*bw+x] = [3]uint8{yy, cb, cr}
		}
	}
	return func(c, bx, by int) uint8 { return ycc[by*bw+bx][c] }
}

// GradientPNG is a PNG (see PNG) of a diagonal gradient: detail enough to
// compress like a photo, made without holding its pixels.
func GradientPNG(width, height, depth, colourType int) ([]byte, error) {
	var buf bytes.Buffer
	err := PNG(&buf, width, height, depth, colourType, func(y int, row []byte) {
		for i := range row {
			row[i] = byte(i/7 + y/5)
		}
	})
	return buf.Bytes(), err
}

// PNG writes a w×h PNG of the given bit depth (8 or 16) and colour type
// (0 grey, 2 RGB, 4 grey and alpha, 6 RGBA) a row at a time, row y's
// bytes from row(y, buf): so a test can make a PNG whose pixels would not
// fit in memory.
func PNG(w io.Writer, width, height, depth, colourType int, row func(y int, buf []byte)) error {
	channels := map[int]int{0: 1, 2: 3, 4: 2, 6: 4}[colourType]
	if channels == 0 || (depth != 8 && depth != 16) {
		return fmt.Errorf("PNG: colour type %d at depth %d is not made here", colourType, depth)
	}
	chunk := func(kind string, data []byte) {
		var hdr [8]byte
		binary.BigEndian.PutUint32(hdr[:4], uint32(len(data)))
		copy(hdr[4:], kind)
		w.Write(hdr[:])
		w.Write(data)
		crc := crc32.NewIEEE()
		crc.Write([]byte(kind))
		crc.Write(data)
		binary.Write(w, binary.BigEndian, crc.Sum32())
	}
	if _, err := w.Write([]byte("\x89PNG\r\n\x1a\n")); err != nil {
		return err
	}
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], uint32(width))
	binary.BigEndian.PutUint32(ihdr[4:], uint32(height))
	ihdr[8], ihdr[9] = byte(depth), byte(colourType)
	chunk("IHDR", ihdr)
	var idat bytes.Buffer
	z, err := zlib.NewWriterLevel(&idat, zlib.BestSpeed)
	if err != nil {
		return err
	}
	buf := make([]byte, 1+width*channels*depth/8)
	for y := range height {
		buf[0] = 0 // filter: none
		row(y, buf[1:])
		if _, err := z.Write(buf); err != nil {
			return err
		}
		// Chunks of a few megabytes, as encoders write them, keep the
		// compressed data from piling up here.
		if idat.Len() > 4<<20 {
			chunk("IDAT", idat.Bytes())
			idat.Reset()
		}
	}
	if err := z.Close(); err != nil {
		return err
	}
	chunk("IDAT", idat.Bytes())
	chunk("IEND", nil)
	return nil
}

// Orientations lists the EXIF orientations, 1 (as stored) to 8.
var Orientations = []int{1, 2, 3, 4, 5, 6, 7, 8}

// TIFF returns EXIF data (a TIFF header and one IFD) holding only an
// Orientation tag, o, in the given byte order ("MM" or "II").
func TIFF(o int, bigEndian bool) []byte {
	var order binary.AppendByteOrder = binary.LittleEndian
	tiff := []byte("II*\x00")
	if bigEndian {
		order, tiff = binary.BigEndian, []byte("MM\x00*")
	}
	tiff = order.AppendUint32(tiff, 8)         // IFD0 follows the header
	tiff = order.AppendUint16(tiff, 1)         // one entry
	tiff = order.AppendUint16(tiff, 0x0112)    // Orientation
	tiff = order.AppendUint16(tiff, 3)         // SHORT
	tiff = order.AppendUint32(tiff, 1)         // one value
	tiff = order.AppendUint16(tiff, uint16(o)) // the value, left-justified
	tiff = append(tiff, 0, 0)
	return order.AppendUint32(tiff, 0) // no next IFD
}

// WithOrientation returns the JPEG jpg with an APP1 Exif segment that
// holds only an Orientation tag, o, right after the start of image.
func WithOrientation(jpg []byte, o int, bigEndian bool) []byte {
	body := append([]byte("Exif\x00\x00"), TIFF(o, bigEndian)...)
	out := []byte{0xff, 0xd8, 0xff, 0xe1, byte((len(body) + 2) >> 8), byte(len(body) + 2)}
	out = append(out, body...)
	return append(out, jpg[2:]...)
}

// PNGWithOrientation returns the PNG png with an eXIf chunk holding only
// an Orientation tag, o, after its header.
func PNGWithOrientation(png []byte, o int) []byte {
	const afterIHDR = 8 + 12 + 13
	tiff := TIFF(o, true)
	out := append([]byte(nil), png[:afterIHDR]...)
	out = binary.BigEndian.AppendUint32(out, uint32(len(tiff)))
	chunk := append([]byte("eXIf"), tiff...)
	out = append(out, chunk...)
	out = binary.BigEndian.AppendUint32(out, crc32.ChecksumIEEE(chunk))
	return append(out, png[afterIHDR:]...)
}

// WebPWithOrientation returns a simple (lossy, "VP8 ") WebP of w×h
// pixels as an extended one (VP8X) with an EXIF chunk holding only an
// Orientation tag, o.
func WebPWithOrientation(webp []byte, w, h, o int) []byte {
	vp8x := []byte("VP8X")
	vp8x = binary.LittleEndian.AppendUint32(vp8x, 10)
	vp8x = append(vp8x, 0x08, 0, 0, 0) // flags: EXIF
	vp8x = append(vp8x, byte(w-1), byte((w-1)>>8), byte((w-1)>>16), byte(h-1), byte((h-1)>>8), byte((h-1)>>16))
	tiff := TIFF(o, false)
	exif := binary.LittleEndian.AppendUint32([]byte("EXIF"), uint32(len(tiff)))
	exif = append(exif, tiff...)
	if len(tiff)%2 == 1 {
		exif = append(exif, 0)
	}
	body := append(append(append([]byte("WEBP"), vp8x...), webp[12:]...), exif...)
	out := binary.LittleEndian.AppendUint32([]byte("RIFF"), uint32(len(body)))
	return append(out, body...)
}

// Orient applies EXIF orientation o to img: what a viewer shows for a
// photo stored as img and tagged o.
func Orient(img image.Image, o int) *image.RGBA {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	ow, oh := w, h
	if o >= 5 {
		ow, oh = h, w
	}
	out := image.NewRGBA(image.Rect(0, 0, ow, oh))
	for y := range h {
		for x := range w {
			var dx, dy int
			switch o {
			case 2:
				dx, dy = w-1-x, y
			case 3:
				dx, dy = w-1-x, h-1-y
			case 4:
				dx, dy = x, h-1-y
			case 5:
				dx, dy = y, x
			case 6:
				dx, dy = h-1-y, x
			case 7:
				dx, dy = h-1-y, w-1-x
			case 8:
				dx, dy = y, w-1-x
			default:
				dx, dy = x, y
			}
			out.Set(dx, dy, img.At(b.Min.X+x, b.Min.Y+y))
		}
	}
	return out
}
