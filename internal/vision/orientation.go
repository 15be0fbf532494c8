package vision

import (
	"bytes"
	"encoding/binary"
	"image"
	"image/draw"
)

// orientation finds the EXIF Orientation tag of a JPEG (APP1), PNG (eXIf)
// or WebP (EXIF chunk) and returns it, or 1 (as stored) when there is
// none or it makes no sense. It reads only the container's headers and
// the first IFD; every offset is checked against the data, so hostile
// input costs at most one pass over the bytes.
func orientation(format string, data []byte) int {
	var exif []byte
	switch format {
	case "jpeg":
		exif = jpegExif(data)
	case "png":
		exif = pngExif(data)
	case "webp":
		exif = webpChunk(data, "EXIF")
		// Some writers keep JPEG's "Exif\0\0" before the TIFF header.
		exif = bytes.TrimPrefix(exif, []byte("Exif\x00\x00"))
	}
	return tiffOrientation(exif)
}

// jpegExif returns the TIFF data of a JPEG's APP1 Exif segment.
func jpegExif(data []byte) []byte {
	var exif []byte
	jpegSegments(data, func(marker byte, body []byte) bool {
		if marker == 0xe1 && bytes.HasPrefix(body, []byte("Exif\x00\x00")) {
			exif = body[6:]
			return false
		}
		return true
	})
	return exif
}

// pngExif returns the data of a PNG's eXIf chunk.
func pngExif(data []byte) []byte {
	for i := 8; i+12 <= len(data); {
		n := int(binary.BigEndian.Uint32(data[i:]))
		if n < 0 || n > len(data)-i-12 {
			return nil
		}
		switch string(data[i+4 : i+8]) {
		case "eXIf":
			return data[i+8 : i+8+n]
		case "IDAT", "IEND":
			return nil
		}
		i += 12 + n
	}
	return nil
}

// webpChunk returns the data of a WebP's first chunk of the given kind.
func webpChunk(data []byte, kind string) []byte {
	if len(data) < 12 || string(data[0:4]) != "RIFF" || string(data[8:12]) != "WEBP" {
		return nil
	}
	for i := 12; i+8 <= len(data); {
		n := int(binary.LittleEndian.Uint32(data[i+4:]))
		if n < 0 || n > len(data)-i-8 {
			return nil
		}
		if string(data[i:i+4]) == kind {
			return data[i+8 : i+8+n]
		}
		i += 8 + n + n%2 // chunks are padded to an even size
	}
	return nil
}

// webpLossless says whether a WebP's pixels (or its alpha) are coded
// losslessly: decoded, those take 4 bytes a pixel, not 1.5.
func webpLossless(data []byte) bool {
	return webpChunk(data, "VP8L") != nil || webpChunk(data, "ALPH") != nil
}

// tiffOrientation reads the Orientation tag (0x0112, one SHORT) from the
// first IFD of TIFF data.
func tiffOrientation(tiff []byte) int {
	if len(tiff) < 8 {
		return 1
	}
	var order binary.ByteOrder
	switch string(tiff[:2]) {
	case "II":
		order = binary.LittleEndian
	case "MM":
		order = binary.BigEndian
	default:
		return 1
	}
	if order.Uint16(tiff[2:]) != 42 {
		return 1
	}
	ifd := order.Uint32(tiff[4:])
	if uint64(ifd)+2 > uint64(len(tiff)) {
		return 1
	}
	entries := tiff[ifd+2:]
	for n := int(order.Uint16(tiff[ifd:])); n > 0 && len(entries) >= 12; n, entries = n-1, entries[12:] {
		if order.Uint16(entries) != 0x0112 {
			continue
		}
		if order.Uint16(entries[2:]) != 3 || order.Uint32(entries[4:]) != 1 {
			return 1
		}
		if o := int(order.Uint16(entries[8:])); o >= 1 && o <= 8 {
			return o
		}
		return 1
	}
	return 1
}

// orient turns img as EXIF orientation o says a viewer shows it.
func orient(img image.Image, o int) image.Image {
	if o <= 1 || o > 8 {
		return img
	}
	b := img.Bounds()
	src := image.NewRGBA(image.Rect(0, 0, b.Dx(), b.Dy()))
	draw.Draw(src, src.Rect, img, b.Min, draw.Src)
	w, h := b.Dx(), b.Dy()
	out := image.NewRGBA(image.Rect(0, 0, w, h))
	if o >= 5 {
		out = image.NewRGBA(image.Rect(0, 0, h, w))
	}
	for y := range h {
		for x := range w {
			var dx, dy int
			switch o {
			case 2: // mirrored
				dx, dy = w-1-x, y
			case 3: // turned 180°
				dx, dy = w-1-x, h-1-y
			case 4: // mirrored top to bottom
				dx, dy = x, h-1-y
			case 5: // transposed
				dx, dy = y, x
			case 6: // to be turned 90° clockwise
				dx, dy = h-1-y, x
			case 7: // transversed
				dx, dy = h-1-y, w-1-x
			case 8: // to be turned 90° anticlockwise
				dx, dy = y, w-1-x
			}
			copy(out.Pix[out.PixOffset(dx, dy):][:4], src.Pix[src.PixOffset(x, y):][:4])
		}
	}
	return out
}
