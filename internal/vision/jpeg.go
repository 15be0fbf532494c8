package vision

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// jpegFrame is what a JPEG's frame header (ITU-T T.81, B.2.2) declares:
// enough to know, before decoding, what image/jpeg will allocate.
type jpegFrame struct {
	progressive   bool
	width, height int
	// sampling holds each component's horizontal and vertical sampling
	// factors, in frame order.
	sampling [][2]int
	// rgb: the three components are R, G and B, not Y, Cb and Cr, as
	// image/jpeg reads them (no JFIF segment, and an Adobe APP14 segment
	// with transform 0 or components named 'R', 'G', 'B'); it converts
	// such an image to RGBA after decoding.
	rgb bool
}

// jpegSegments calls visit with each marker segment before the image data
// (B.1.1.4) until it returns false, and says whether it saw them all.
func jpegSegments(data []byte, visit func(marker byte, body []byte) bool) error {
	if len(data) < 2 || data[0] != 0xff || data[1] != 0xd8 {
		return errors.New("no start-of-image marker")
	}
	for i := 2; ; {
		if i >= len(data) || data[i] != 0xff {
			return errors.New("no marker where one belongs")
		}
		// Any number of 0xff fill bytes may precede a marker (B.1.1.2).
		for i < len(data) && data[i] == 0xff {
			i++
		}
		if i >= len(data) {
			return errors.New("cut short in the headers")
		}
		marker := data[i]
		i++
		switch {
		case marker == 0x01 || marker >= 0xd0 && marker <= 0xd8:
			continue // TEM, RSTn and SOI stand alone
		case marker == 0xda || marker == 0xd9:
			return nil // the image data, or its end: no more headers
		}
		if i+2 > len(data) {
			return errors.New("cut short in the headers")
		}
		n := int(binary.BigEndian.Uint16(data[i:]))
		if n < 2 || i+n > len(data) {
			return fmt.Errorf("marker segment %#x runs past the data", marker)
		}
		if !visit(marker, data[i+2:i+n]) {
			return nil
		}
		i += n
	}
}

// readJPEGFrame reads the frame header, and what decides how image/jpeg
// treats three components, from the segments before it.
func readJPEGFrame(data []byte) (jpegFrame, error) {
	var f jpegFrame
	adobeTransform, jfif, found := -1, false, false
	var frameErr error
	err := jpegSegments(data, func(marker byte, body []byte) bool {
		switch {
		case marker == 0xe0 && len(body) >= 5 && string(body[:5]) == "JFIF\x00":
			jfif = true
		case marker == 0xee && len(body) >= 12 && string(body[:5]) == "Adobe":
			adobeTransform = int(body[11])
		case marker >= 0xc0 && marker <= 0xcf && marker != 0xc4 && marker != 0xc8 && marker != 0xcc:
			found = true
			if len(body) < 6 || len(body) < 6+3*int(body[5]) {
				frameErr = errors.New("frame header is cut short")
				return false
			}
			f.progressive = marker == 0xc2 || marker == 0xc6 || marker == 0xca || marker == 0xce
			f.height = int(binary.BigEndian.Uint16(body[1:]))
			f.width = int(binary.BigEndian.Uint16(body[3:]))
			var ids strings.Builder
			for c := range int(body[5]) {
				spec := body[6+3*c:]
				ids.WriteByte(spec[0])
				f.sampling = append(f.sampling, [2]int{int(spec[1] >> 4), int(spec[1] & 0x0f)})
			}
			f.rgb = len(f.sampling) == 3 && !jfif && (adobeTransform == 0 || ids.String() == "RGB")
			return false
		}
		return true
	})
	switch {
	case frameErr != nil:
		return f, frameErr
	case err != nil:
		return f, err
	case !found:
		return f, errors.New("no frame header before the image data")
	}
	return f, nil
}

// jpegFixedBytes is what decoding a JPEG allocates whatever its size: the
// decoder's tables and buffers, and Decode's own reading of the header.
const jpegFixedBytes = 128 << 10

// decodeBytes is the most image/jpeg (go1.26) allocates decoding the frame,
// by how it lays the image out: every component padded to whole MCUs at a
// byte a sample (and a fourth, black, plane), 256 bytes more per 8×8 block
// for a progressive image's coefficients, and a 4-byte-a-pixel copy for
// the CMYK and RGB images it converts at the end. TestJPEGDecodeBytes
// holds it to what image/jpeg really allocates.
func (f jpegFrame) decodeBytes() int64 {
	hmax, vmax := 1, 1
	for _, s := range f.sampling {
		hmax, vmax = max(hmax, s[0]), max(vmax, s[1])
	}
	if len(f.sampling) == 1 {
		// A single component is decoded in 8×8 blocks, whatever its
		// sampling factors say (A.2.2).
		hmax, vmax = 1, 1
		f.sampling = [][2]int{{1, 1}}
	}
	mcusX := int64(ceilDiv(f.width, 8*hmax))
	mcusY := int64(ceilDiv(f.height, 8*vmax))
	total := int64(jpegFixedBytes)
	for _, s := range f.sampling {
		blocks := mcusX * int64(s[0]) * mcusY * int64(s[1])
		total += 64 * blocks
		if f.progressive {
			total += 256 * blocks
		}
	}
	if len(f.sampling) == 4 || f.rgb {
		total += 4 * int64(f.width) * int64(f.height)
	}
	return total
}

// describe names the frame's layout as an error message would: "a
// progressive 4:2:0 JPEG".
func (f jpegFrame) describe() string {
	kind := "baseline"
	if f.progressive {
		kind = "progressive"
	}
	layout := "grey"
	switch len(f.sampling) {
	case 3:
		layout = f.subsampling()
		if f.rgb {
			layout = "RGB"
		}
	case 4:
		layout = "CMYK"
	}
	return fmt.Sprintf("a %s %s JPEG", kind, layout)
}

// subsampling names the chroma subsampling of a three-component frame as
// J:a:b (4:2:0 for luma sampled twice as densely both ways).
func (f jpegFrame) subsampling() string {
	y, c := f.sampling[0], f.sampling[1]
	if c[0] == 0 || c[1] == 0 {
		return "YCbCr"
	}
	name, ok := map[[2]int]string{
		{1, 1}: "4:4:4", {2, 1}: "4:2:2", {2, 2}: "4:2:0",
		{1, 2}: "4:4:0", {4, 1}: "4:1:1", {4, 2}: "4:1:0",
	}[[2]int{y[0] / c[0], y[1] / c[1]}]
	if !ok {
		return "YCbCr"
	}
	return name
}
