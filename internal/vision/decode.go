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

	_ "golang.org/x/image/bmp"
	_ "golang.org/x/image/webp"

	"github.com/surgeml/surge/internal/vision/scaledjpeg"
)

// DefaultMaxPixels bounds decoded images: 50 MP is a large phone photo.
// Decode holds no image whole at that size (see MaxDecodeMemory).
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
// Inspect accepts at DefaultMaxPixels, beyond its encoded bytes: the most
// one upload makes a worker hold. A progressive JPEG keeps a bit per
// coefficient of the whole image (19 MB at 50 MP) and the coefficients of
// what it decodes; a PNG, two rows and the sums of its reduced window;
// GIF, BMP and WebP are decoded whole, so Inspect holds them to what fits.
const MaxDecodeMemory = 64 << 20

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
	return h, nil
}

// wholeLimit is the pixel limit of a format that is decoded whole: what
// its decoder holds a pixel (measured), into MaxDecodeMemory.
func wholeLimit(format string, data []byte) (pixels int, why string) {
	switch format {
	case "bmp": // 4 bytes a pixel at 24 or 32 bits (1 when paletted), and the averages
		return MaxDecodeMemory / 5, "BMP"
	case "webp":
		if webpLossless(data) { // 4 bytes a pixel, and a transform may copy them
			return MaxDecodeMemory / 8, "lossless WebP or WebP with alpha"
		}
		return MaxDecodeMemory / 2, "WebP" // YCbCr 4:2:0, 1.5 bytes a pixel
	}
	return math.MaxInt, "" // JPEG and PNG are decoded reduced; GIF holds a byte a pixel
}

// Decode checks the header against maxPixels, then decodes no more than a
// model's preprocessing reads: the centred window no longer than
// MaxAspect times its shorter side, reduced while that side stays at
// least MinSide (a JPEG by DCT scaling at 1/2, 1/4 or 1/8; a PNG averaged
// as its rows arrive; GIF, BMP and WebP decoded whole, then averaged), and
// turned as its EXIF orientation says. An image that needs neither is
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
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return orient(img, h.Orientation), nil
}

func decodeReduced(data []byte, h Header) (image.Image, error) {
	all := image.Rect(0, 0, h.Width, h.Height)
	win := window(all)
	short := min(win.Dx(), win.Dy())
	switch h.Format {
	case "jpeg":
		f := 1
		for f < 8 && short/(2*f) >= MinSide {
			f *= 2
		}
		if f > 1 || win != all {
			return scaledjpeg.Decode(bytes.NewReader(data), f, win)
		}
	case "png":
		if f := max(1, short/MinSide); f > 1 || win != all {
			return decodePNG(data, win, f)
		}
	}
	img, _, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	// A GIF's first frame may be smaller than its screen: its own bounds
	// are the picture.
	b := img.Bounds()
	win = window(b)
	if f := max(1, min(win.Dx(), win.Dy())/MinSide); f > 1 || win != b {
		return reduce(img, win, f), nil
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
