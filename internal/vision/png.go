package vision

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"image"
	"image/color"
	"io"
)

// decodePNG decodes the window win of a PNG, averaged over f×f squares as
// its rows arrive: what it holds is two rows and the sums, not the image
// (image/png would hold 8 bytes a pixel of a 16-bit RGBA one). It reads
// every colour type, bit depth and interlacing that image/png reads.
func decodePNG(data []byte, win image.Rectangle, f int) (*image.RGBA, error) {
	p, err := parsePNG(data)
	if err != nil {
		return nil, err
	}
	zr, err := zlib.NewReader(io.MultiReader(p.idat...))
	if err != nil {
		return nil, fmt.Errorf("png: %w", err)
	}
	defer zr.Close()
	b := newBox(win.Intersect(image.Rect(0, 0, p.width, p.height)), f)
	passes := []struct{ x, y, dx, dy int }{{0, 0, 1, 1}}
	if p.interlaced {
		passes = []struct{ x, y, dx, dy int }{{0, 0, 8, 8}, {4, 0, 8, 8}, {0, 4, 4, 8}, {2, 0, 4, 4}, {0, 2, 2, 4}, {1, 0, 2, 2}, {0, 1, 1, 2}}
	}
	bitsPP := p.depth * p.channels
	bytesPP := max(1, bitsPP/8) // the filters' distance to "the pixel before"
	for _, ps := range passes {
		w, h := ceilDiv(p.width-ps.x, ps.dx), ceilDiv(p.height-ps.y, ps.dy)
		if w <= 0 || h <= 0 {
			continue
		}
		rowBytes := ceilDiv(w*bitsPP, 8)
		cr, pr := make([]byte, 1+rowBytes), make([]byte, 1+rowBytes)
		for py := range h {
			if _, err := io.ReadFull(zr, cr); err != nil {
				return nil, fmt.Errorf("png: pixel data: %w", err)
			}
			if err := unfilter(cr[0], cr[1:], pr[1:], bytesPP); err != nil {
				return nil, err
			}
			if row := b.row(ps.y + py*ps.dy); row != nil {
				for px := range w {
					b.add(row, ps.x+px*ps.dx, p.pixel(cr[1:], px))
				}
			}
			cr, pr = pr, cr
		}
	}
	return b.image(), nil
}

// pngInfo is what a PNG's chunks say, and where its pixel data is.
type pngInfo struct {
	width, height   int
	depth, channels int
	colourType      byte
	interlaced      bool
	palette         [256]color.RGBA64 // premultiplied
	transparent     []byte            // tRNS of a grey or RGB image: the key colour
	idat            []io.Reader
}

func parsePNG(data []byte) (*pngInfo, error) {
	if !bytes.HasPrefix(data, []byte("\x89PNG\r\n\x1a\n")) {
		return nil, errors.New("png: no signature")
	}
	p := &pngInfo{}
	seenHeader, seenPalette := false, false
	for rest := data[8:]; ; {
		if len(rest) < 12 {
			return nil, errors.New("png: truncated chunk")
		}
		n := binary.BigEndian.Uint32(rest)
		if uint64(n) > uint64(len(rest)-12) {
			return nil, errors.New("png: truncated chunk")
		}
		kind, body := string(rest[4:8]), rest[8:8+n]
		if crc32.ChecksumIEEE(rest[4:8+n]) != binary.BigEndian.Uint32(rest[8+n:]) {
			return nil, fmt.Errorf("png: %q chunk checksum mismatch", kind)
		}
		rest = rest[12+n:]
		if !seenHeader && kind != "IHDR" {
			return nil, errors.New("png: first chunk is not IHDR")
		}
		switch kind {
		case "IHDR":
			if seenHeader || len(body) != 13 {
				return nil, errors.New("png: bad IHDR")
			}
			seenHeader = true
			if err := p.header(body); err != nil {
				return nil, err
			}
		case "PLTE":
			if len(body)%3 != 0 || len(body)/3 > 256 || len(body) == 0 {
				return nil, errors.New("png: bad PLTE")
			}
			seenPalette = true
			for i := range 256 {
				p.palette[i] = color.RGBA64{A: 0xffff} // image/png's padding: opaque black
				if 3*i < len(body) {
					p.palette[i] = color.RGBA64{uint16(body[3*i]) * 0x101, uint16(body[3*i+1]) * 0x101, uint16(body[3*i+2]) * 0x101, 0xffff}
				}
			}
		case "tRNS":
			if p.colourType == 3 {
				for i, a := range body[:min(len(body), 256)] {
					c, a := p.palette[i], uint32(a)*0x101
					p.palette[i] = color.RGBA64{uint16(uint32(c.R) * a / 0xffff), uint16(uint32(c.G) * a / 0xffff), uint16(uint32(c.B) * a / 0xffff), uint16(a)}
				}
			} else {
				p.transparent = body
			}
		case "IDAT":
			p.idat = append(p.idat, bytes.NewReader(body))
		case "IEND":
			if len(p.idat) == 0 {
				return nil, errors.New("png: no pixel data")
			}
			if p.colourType == 3 && !seenPalette {
				return nil, errors.New("png: paletted image without a palette")
			}
			return p, nil
		}
	}
}

func (p *pngInfo) header(b []byte) error {
	w, h := binary.BigEndian.Uint32(b[0:]), binary.BigEndian.Uint32(b[4:])
	if w == 0 || h == 0 || w > MaxSide || h > MaxSide {
		return fmt.Errorf("png: %d×%d pixels", w, h)
	}
	p.width, p.height = int(w), int(h)
	p.depth, p.colourType = int(b[8]), b[9]
	if b[10] != 0 || b[11] != 0 || b[12] > 1 {
		return errors.New("png: unknown compression, filter or interlace method")
	}
	p.interlaced = b[12] == 1
	depths := map[byte][]int{0: {1, 2, 4, 8, 16}, 2: {8, 16}, 3: {1, 2, 4, 8}, 4: {8, 16}, 6: {8, 16}}[p.colourType]
	for _, d := range depths {
		if d == p.depth {
			p.channels = map[byte]int{0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[p.colourType]
			return nil
		}
	}
	return fmt.Errorf("png: colour type %d at bit depth %d", p.colourType, p.depth)
}

// pixel returns pixel x of an unfiltered row, premultiplied.
func (p *pngInfo) pixel(row []byte, x int) color.RGBA64 {
	sample := func(i int) uint16 { // sample i of the row, scaled to 16 bits
		switch p.depth {
		case 16:
			return binary.BigEndian.Uint16(row[2*i:])
		case 8:
			return uint16(row[i]) * 0x101
		}
		perByte := 8 / p.depth
		v := row[i/perByte] >> (8 - p.depth*(i%perByte+1)) & (1<<p.depth - 1)
		return uint16(uint32(v) * 0xffff / (1<<p.depth - 1))
	}
	switch p.colourType {
	case 3:
		perByte := 8 / p.depth
		return p.palette[row[x/perByte]>>(8-p.depth*(x%perByte+1))&(1<<p.depth-1)]
	case 0:
		v := sample(x)
		if len(p.transparent) >= 2 && v == keyValue(p.transparent[0:2], p.depth) {
			return color.RGBA64{}
		}
		return color.RGBA64{v, v, v, 0xffff}
	case 2:
		r, g, b := sample(3*x), sample(3*x+1), sample(3*x+2)
		if t := p.transparent; len(t) >= 6 && r == keyValue(t[0:2], p.depth) && g == keyValue(t[2:4], p.depth) && b == keyValue(t[4:6], p.depth) {
			return color.RGBA64{}
		}
		return color.RGBA64{r, g, b, 0xffff}
	case 4:
		return premultiply(sample(2*x), sample(2*x), sample(2*x), sample(2*x+1))
	default: // 6
		return premultiply(sample(4*x), sample(4*x+1), sample(4*x+2), sample(4*x+3))
	}
}

// keyValue is a tRNS key sample (two bytes) scaled as sample scales.
func keyValue(b []byte, depth int) uint16 {
	v := binary.BigEndian.Uint16(b)
	switch {
	case depth == 16:
		return v
	case depth == 8:
		return uint16(v&0xff) * 0x101
	default:
		v &= 1<<depth - 1
		return uint16(uint32(v) * 0xffff / (1<<depth - 1))
	}
}

func premultiply(r, g, b, a uint16) color.RGBA64 {
	m := uint32(a)
	return color.RGBA64{uint16(uint32(r) * m / 0xffff), uint16(uint32(g) * m / 0xffff), uint16(uint32(b) * m / 0xffff), a}
}

// unfilter undoes a row's filter in place, given the previous row (zero
// for the first), bpp bytes a pixel apart (section 9 of the PNG spec).
func unfilter(filter byte, cur, prev []byte, bpp int) error {
	switch filter {
	case 0:
	case 1:
		for i := bpp; i < len(cur); i++ {
			cur[i] += cur[i-bpp]
		}
	case 2:
		for i := range cur {
			cur[i] += prev[i]
		}
	case 3:
		for i := range cur {
			left := 0
			if i >= bpp {
				left = int(cur[i-bpp])
			}
			cur[i] += byte((left + int(prev[i])) / 2)
		}
	case 4:
		for i := range cur {
			var a, c int
			if i >= bpp {
				a, c = int(cur[i-bpp]), int(prev[i-bpp])
			}
			cur[i] += paeth(a, int(prev[i]), c)
		}
	default:
		return fmt.Errorf("png: unknown filter %d", filter)
	}
	return nil
}

func paeth(a, b, c int) byte {
	p := a + b - c
	pa, pb, pc := abs(p-a), abs(p-b), abs(p-c)
	switch {
	case pa <= pb && pa <= pc:
		return byte(a)
	case pb <= pc:
		return byte(b)
	default:
		return byte(c)
	}
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}
