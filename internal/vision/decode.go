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

	_ "golang.org/x/image/bmp"
	_ "golang.org/x/image/webp"
)

// DefaultMaxPixels bounds decoded images: 50 MP is a large phone photo and
// about 200 MB of RGBA, the most one upload may make a worker allocate.
const DefaultMaxPixels = 50_000_000

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
	Width, Height int
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
	h := Header{Format: format, Width: cfg.Width, Height: cfg.Height}
	if h.Width <= 0 || h.Height <= 0 {
		return h, fmt.Errorf("%w: %d×%d pixels", ErrCorrupt, h.Width, h.Height)
	}
	if int64(h.Width)*int64(h.Height) > int64(maxPixels) {
		return h, fmt.Errorf("%w: %d×%d is over the limit of %d", ErrTooLarge, h.Width, h.Height, maxPixels)
	}
	return h, nil
}

// Decode checks the header against maxPixels, then decodes. A decoder
// panic on hostile input becomes ErrCorrupt instead of taking the worker
// down with it.
func Decode(data []byte, maxPixels int) (img image.Image, err error) {
	if _, err := Inspect(data, maxPixels); err != nil {
		return nil, err
	}
	defer func() {
		if p := recover(); p != nil {
			img, err = nil, fmt.Errorf("%w: decoder panicked: %v", ErrCorrupt, p)
		}
	}()
	img, _, err = image.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return img, nil
}
