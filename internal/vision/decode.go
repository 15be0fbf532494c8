// Package vision turns uploaded bytes into model input: decoding with
// limits, and the resize, crop and normalisation a model expects. It does
// no I/O.
package vision

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	_ "image/gif"
	_ "image/jpeg"
	_ "image/png"
	"math"
	"runtime/debug"

	_ "golang.org/x/image/bmp"
	_ "golang.org/x/image/webp"
)

// DefaultMaxPixels bounds decoded images: 50 MP is a large phone photo.
const DefaultMaxPixels = 50_000_000

// MaxSide bounds either side of an image: the most a JPEG or GIF can
// declare. A PNG row, which is decoded whole, stays under half a megabyte.
const MaxSide = 65535

// MinSide is the shorter side Decode reduces an image to, at least: twice
// the 256 pixels that ImageNet preprocessing resizes it to, so that the
// antialiased resize that follows has two pixels for each it makes and
// labels do not change.
const MinSide = 512

// MaxAspect is the longest a decoded image is for its shorter side:
// Decode keeps the centred window of that shape, in which preprocessing's
// centre crop lies, and no more of a panorama.
const MaxAspect = 2

// MaxDecodeMemory bounds what Decode allocates for any one image that
// Inspect accepts, beyond its encoded bytes: the most one upload makes a
// worker hold. A PNG costs two rows and the sums of its reduced window,
// whatever its size; JPEG, GIF, BMP and WebP are decoded whole, so Inspect
// refuses those whose decoding would not fit, from their headers. 100 MiB
// takes a 50 MP phone photo (a baseline 4:2:0 JPEG: 1.5 bytes a pixel)
// and a 12 MP progressive one, as mozjpeg writes by default (7.5 bytes a
// pixel: image/jpeg keeps every coefficient), and keeps a worker with one
// inference under 200 MB.
const MaxDecodeMemory = 100 << 20

var (
	// ErrNotImage: the bytes are in no format we read.
	ErrNotImage = errors.New("not an image (JPEG, PNG, GIF, BMP or WebP)")
	// ErrTooLarge: the header declares more pixels than allowed.
	ErrTooLarge = errors.New("image has too many pixels")
	// ErrCorrupt: the header is fine but the data is not (truncated, say).
	ErrCorrupt = errors.New("image data is corrupt")
)

// Header is what an image declares about itself.
type Header struct {
	Format        string
	Width, Height int // as stored
	// Orientation is the EXIF orientation: 1 (as stored, also when there
	// is none) to 8.
	Orientation int
}

// Inspect reads only the header: cheap enough for the web tier to refuse
// non-images and pixel bombs before storing anything.
func Inspect(data []byte, maxPixels int) (Header, error) {
	cfg, format, err := image.DecodeConfig(bytes.NewReader(data))
	if errors.Is(err, image.ErrFormat) {
		return Header{}, ErrNotImage
	}
	if err != nil {
		return Header{}, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	h := Header{Format: format, Width: cfg.Width, Height: cfg.Height, Orientation: orientation(format, data)}
	if h.Width <= 0 || h.Height <= 0 {
		return h, fmt.Errorf("%w: %d×%d pixels", ErrCorrupt, h.Width, h.Height)
	}
	if h.Width > MaxSide || h.Height > MaxSide {
		return h, fmt.Errorf("%w: %d×%d has a side over %d", ErrTooLarge, h.Width, h.Height, MaxSide)
	}
	if int64(h.Width)*int64(h.Height) > int64(maxPixels) {
		return h, fmt.Errorf("%w: %d×%d is over the limit of %d", ErrTooLarge, h.Width, h.Height, maxPixels)
	}
	if limit, why := wholeLimit(format, data); int64(h.Width)*int64(h.Height) > int64(limit) {
		return h, fmt.Errorf("%w: %d×%d is over the limit of %d for %s", ErrTooLarge, h.Width, h.Height, limit, why)
	}
	if format == "jpeg" {
		frame, err := readJPEGFrame(data)
		if err != nil {
			return h, fmt.Errorf("%w: %v", ErrCorrupt, err)
		}
		if need := frame.decodeBytes() + reducedBytes(h); need > MaxDecodeMemory {
			perPixel := float64(need) / float64(h.Width) / float64(h.Height)
			return h, fmt.Errorf("%w: %d×%d, %s, takes %d MB to decode, over the limit of %d MB (%.1f megapixels for such a JPEG)",
				ErrTooLarge, h.Width, h.Height, frame.describe(), need>>20, MaxDecodeMemory>>20, MaxDecodeMemory/perPixel/1e6)
		}
	}
	return h, nil
}

// reduction is the part of an image Decode keeps and the factor it
// reduces it by.
func reduction(h Header) (win image.Rectangle, f int) {
	win = window(image.Rect(0, 0, h.Width, h.Height))
	return win, max(1, min(win.Dx(), win.Dy())/MinSide)
}

// reducedBytes is what Decode allocates after decoding an image whole:
// reducing it (the sums and the pixels of its output, see box; a window
// at full size is the decoded image's own pixels), and turning what it
// keeps (two RGBA copies, see orient).
func reducedBytes(h Header) int64 {
	win, f := reduction(h)
	kept := int64(ceilDiv(win.Dx(), f)) * int64(ceilDiv(win.Dy(), f))
	var n int64
	if f > 1 {
		n += 20 * kept
	}
	if h.Orientation > 1 {
		n += 8 * kept
	}
	return n
}

// wholeDecodeMemory is what BMP and WebP decoding may allocate: their
// limits are tested with files at them, and no WebP encoder is at hand
// here to make larger ones, so they stay under MaxDecodeMemory.
const wholeDecodeMemory = 64 << 20

// wholeLimit is the pixel limit of BMP and WebP, which are decoded whole:
// what their decoders hold a pixel (measured), into wholeDecodeMemory.
// JPEG's is reckoned from its frame header (jpegFrame.decodeBytes).
func wholeLimit(format string, data []byte) (pixels int, why string) {
	switch format {
	case "bmp": // 4 bytes a pixel at 24 or 32 bits (1 when paletted), and the averages
		return wholeDecodeMemory / 5, "BMP"
	case "webp":
		if webpLossless(data) { // 4 bytes a pixel, and a transform may copy them
			return wholeDecodeMemory / 8, "lossless WebP or WebP with alpha"
		}
		return wholeDecodeMemory / 2, "WebP" // YCbCr 4:2:0, 1.5 bytes a pixel
	}
	return math.MaxInt, "" // PNG is decoded reduced; GIF holds a byte a pixel
}

// Decode checks the header against maxPixels and MaxDecodeMemory, then
// keeps no more than a model's preprocessing reads: the centred window no
// longer than MaxAspect times its shorter side, reduced while that side
// stays at least MinSide (a PNG averaged as its rows arrive; JPEG, GIF,
// BMP and WebP decoded whole, then averaged), and turned as its EXIF
// orientation says. An image that needs neither is
// decoded exactly as image.Decode decodes it. A decoder panic on hostile
// input becomes ErrCorrupt instead of taking the worker down with it.
func Decode(data []byte, maxPixels int) (img image.Image, err error) {
	h, err := Inspect(data, maxPixels)
	if err != nil {
		return nil, err
	}
	defer func() {
		if p := recover(); p != nil {
			img, err = nil, fmt.Errorf("%w: decoder panicked: %v", ErrCorrupt, p)
		}
	}()
	img, err = decodeReduced(data, h)
	if int64(h.Width)*int64(h.Height) >= releasePixels {
		// What decoding allocated is garbage now; left to the collector,
		// its pages stay resident while the next large image is decoded
		// beside them (a worker at 276 MB after a 12 MP, a PNG and a
		// 48 MP photo in a row, against 162 MB for the worst alone).
		debug.FreeOSMemory()
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return orient(img, h.Orientation), nil
}

// releasePixels is the size from which Decode hands what it allocated
// back to the system at once: a full collection costs milliseconds, such
// an image's decoding hundreds.
const releasePixels = 4_000_000

func decodeReduced(data []byte, h Header) (image.Image, error) {
	if win, f := reduction(h); h.Format == "png" && (f > 1 || win != image.Rect(0, 0, h.Width, h.Height)) {
		return decodePNG(data, win, f)
	}
	img, _, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	// A GIF's first frame may be smaller than its screen: its own bounds
	// are the picture.
	b := img.Bounds()
	win := window(b)
	f := max(1, min(win.Dx(), win.Dy())/MinSide)
	switch {
	case f > 1:
		return reduce(img, win, f), nil
	case win != b:
		// The window's pixels as decoded: no copy, no conversion.
		if sub, ok := img.(interface {
			SubImage(image.Rectangle) image.Image
		}); ok {
			return sub.SubImage(win), nil
		}
		return reduce(img, win, 1), nil
	}
	return img, nil
}

// window is the centred part of r no longer than MaxAspect times its
// shorter side.
func window(r image.Rectangle) image.Rectangle {
	w, h := r.Dx(), r.Dy()
	switch {
	case w > MaxAspect*h:
		x := r.Min.X + (w-MaxAspect*h)/2
		return image.Rect(x, r.Min.Y, x+MaxAspect*h, r.Max.Y)
	case h > MaxAspect*w:
		y := r.Min.Y + (h-MaxAspect*w)/2
		return image.Rect(r.Min.X, y, r.Max.X, y+MaxAspect*w)
	}
	return r
}
