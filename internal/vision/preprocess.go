package vision

import (
	"fmt"
	"image"
	"math"

	"golang.org/x/image/draw"
)

// Preprocess is the ImageNet recipe from the model's SOURCE.md: scale the
// shorter side to Resize with an antialiased bilinear filter (as PIL does),
// take the centre Crop×Crop square, scale to [0,1], normalise per channel
// and lay out planar RGB (NCHW).
type Preprocess struct {
	Resize, Crop int
	Mean, Std    [3]float32
}

// ForCrop is the ImageNet recipe for a model whose input is crop pixels
// square: the shorter side goes to crop·256/224 (256 for the usual 224),
// and torchvision's ImageNet mean and standard deviation.
func ForCrop(crop int) Preprocess {
	return Preprocess{
		Resize: int(math.Round(float64(crop) * 256 / 224)),
		Crop:   crop,
		Mean:   [3]float32{0.485, 0.456, 0.406},
		Std:    [3]float32{0.229, 0.224, 0.225},
	}
}

// TensorLen is the number of floats Tensor writes.
func (p Preprocess) TensorLen() int { return 3 * p.Crop * p.Crop }

// Scratch is reusable working memory for Tensor: the crop and, for a run
// of images of one size (a face set, say), the resampling weights and their
// half-way buffer. Not for concurrent use.
type Scratch struct {
	crop   *image.RGBA
	scaler draw.Scaler
	sizes  [4]int // the scaler's destination and source sizes
}

// NewScratch allocates working memory for p.
func (p Preprocess) NewScratch() *Scratch {
	return &Scratch{crop: image.NewRGBA(image.Rect(0, 0, p.Crop, p.Crop))}
}

// Tensor writes img as model input into dst, which must hold TensorLen
// floats, working in s (nil allocates fresh scratch).
func (p Preprocess) Tensor(img image.Image, dst []float32, s *Scratch) error {
	if len(dst) != p.TensorLen() {
		return fmt.Errorf("tensor buffer holds %d floats, need %d", len(dst), p.TensorLen())
	}
	// Only the centred window that Decode keeps of a panorama is read, so
	// that an image gives the same tensor whether it was decoded whole or
	// not (and a 65535×1 one does not make a 16-million-pixel resize).
	sb := window(img.Bounds())
	sw, sh := sb.Dx(), sb.Dy()
	if sw <= 0 || sh <= 0 {
		return fmt.Errorf("image is empty (%d×%d)", sw, sh)
	}
	w, h := resized(sw, sh, p.Resize)
	if w < p.Crop || h < p.Crop {
		return fmt.Errorf("resize target %d×%d is smaller than the %d crop", w, h, p.Crop)
	}
	if s == nil || s.crop.Rect != image.Rect(0, 0, p.Crop, p.Crop) {
		s = p.NewScratch()
	}
	if sizes := [4]int{w, h, sw, sh}; s.scaler == nil || s.sizes != sizes {
		s.scaler, s.sizes = draw.BiLinear.NewScaler(w, h, sw, sh), sizes
	}
	x0, y0 := w/2-p.Crop/2, h/2-p.Crop/2
	// Scaling the whole image onto a rectangle offset by the crop origin and
	// clipped to the crop computes only the pixels we keep, and equals
	// resize-then-crop.
	crop := s.crop
	s.scaler.Scale(crop, image.Rect(-x0, -y0, w-x0, h-y0), img, sb, draw.Src, nil)

	var lut [3][256]float32
	for c := range 3 {
		for v := range 256 {
			lut[c][v] = (float32(v)/255 - p.Mean[c]) / p.Std[c]
		}
	}
	plane := p.Crop * p.Crop
	for i := range plane {
		px := crop.Pix[4*i : 4*i+3]
		dst[i] = lut[0][px[0]]
		dst[plane+i] = lut[1][px[1]]
		dst[2*plane+i] = lut[2][px[2]]
	}
	return nil
}

// resized gives the size with the shorter side equal to short, the longer
// rounded to keep the aspect ratio.
func resized(w, h, short int) (int, int) {
	if w <= h {
		return short, int(math.Round(float64(h) * float64(short) / float64(w)))
	}
	return int(math.Round(float64(w) * float64(short) / float64(h))), short
}
