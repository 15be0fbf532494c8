// Copyright 2012 The Go Authors. All rights reserved.
// Use of this source code is governed by a BSD-style
// license that can be found in the LICENSE file.

package scaledjpeg

import (
	"image"
	"math"
)

// makeImg fixes the window's MCUs and allocates the planes for them, at
// 1/scale.
func (d *decoder) makeImg() error {
	h0, v0 := d.comp[0].h, d.comp[0].v
	d.window = d.window.Intersect(image.Rect(0, 0, d.width, d.height))
	if d.window.Empty() {
		return FormatError("window is outside the image")
	}
	mw, mh := 8*h0, 8*v0 // an MCU's size in pixels
	d.mcus = image.Rect(d.window.Min.X/mw, d.window.Min.Y/mh, ceilDiv(d.window.Max.X, mw), ceilDiv(d.window.Max.Y, mh))
	planes := image.Rect(d.mcus.Min.X*h0*d.n, d.mcus.Min.Y*v0*d.n, d.mcus.Max.X*h0*d.n, d.mcus.Max.Y*v0*d.n)
	if d.nComp == 1 {
		d.img1 = image.NewGray(planes)
		return nil
	}

	hRatio := h0 / d.comp[1].h
	vRatio := v0 / d.comp[1].v
	var subsampleRatio image.YCbCrSubsampleRatio
	switch hRatio<<4 | vRatio {
	case 0x11:
		subsampleRatio = image.YCbCrSubsampleRatio444
	case 0x12:
		subsampleRatio = image.YCbCrSubsampleRatio440
	case 0x21:
		subsampleRatio = image.YCbCrSubsampleRatio422
	case 0x22:
		subsampleRatio = image.YCbCrSubsampleRatio420
	case 0x41:
		subsampleRatio = image.YCbCrSubsampleRatio411
	case 0x42:
		subsampleRatio = image.YCbCrSubsampleRatio410
	default:
		panic("unreachable")
	}
	d.img3 = image.NewYCbCr(planes, subsampleRatio)

	if d.nComp == 4 {
		h3, v3 := d.comp[3].h, d.comp[3].v
		d.blackStride = d.mcus.Dx() * h3 * d.n
		d.blackPix = make([]byte, d.blackStride*d.mcus.Dy()*v3*d.n)
	}
	return nil
}

// kept says where the kept coefficients of component c's block (bx, by)
// start in d.coeffs[c], or -1 for a block outside the window's MCUs.
func (d *decoder) kept(c, bx, by int) int {
	h, v := d.comp[c].h, d.comp[c].v
	x, y := bx-d.mcus.Min.X*h, by-d.mcus.Min.Y*v
	w := d.mcus.Dx() * h
	if x < 0 || y < 0 || x >= w || y >= d.mcus.Dy()*v {
		return -1
	}
	return (y*w + x) * d.n * d.n
}

// keptIndex maps a coefficient's natural-order index to its place among
// the n×n kept ones, or -1 if it is not kept.
func (d *decoder) keptIndex(u int) int {
	row, col := u/8, u%8
	if row >= d.n || col >= d.n {
		return -1
	}
	return row*d.n + col
}

// Specified in section B.2.3.
func (d *decoder) processSOS(n int) error {
	if d.nComp == 0 {
		return FormatError("missing SOF marker")
	}
	if n < 6 || 4+2*d.nComp < n || n%2 != 0 {
		return FormatError("SOS has wrong length")
	}
	if err := d.readFull(d.tmp[:n]); err != nil {
		return err
	}
	nComp := int(d.tmp[0])
	if n != 4+2*nComp {
		return FormatError("SOS length inconsistent with number of components")
	}
	var scan [maxComponents]struct {
		compIndex uint8
		td        uint8 // DC table selector.
		ta        uint8 // AC table selector.
	}
	totalHV := 0
	for i := 0; i < nComp; i++ {
		cs := d.tmp[1+2*i] // Component selector.
		compIndex := -1
		for j, comp := range d.comp[:d.nComp] {
			if cs == comp.c {
				compIndex = j
			}
		}
		if compIndex < 0 {
			return FormatError("unknown component selector")
		}
		scan[i].compIndex = uint8(compIndex)
		// Section B.2.3 states that "the value of Cs_j shall be different from
		// the values of Cs_1 through Cs_(j-1)". Since we have previously
		// verified that a frame's component identifiers (C_i values in section
		// B.2.2) are unique, it suffices to check that the implicit indexes
		// into d.comp are unique.
		for j := 0; j < i; j++ {
			if scan[i].compIndex == scan[j].compIndex {
				return FormatError("repeated component selector")
			}
		}
		totalHV += d.comp[compIndex].h * d.comp[compIndex].v

		// The baseline t <= 1 restriction is specified in table B.3.
		scan[i].td = d.tmp[2+2*i] >> 4
		if t := scan[i].td; t > maxTh || (d.baseline && t > 1) {
			return FormatError("bad Td value")
		}
		scan[i].ta = d.tmp[2+2*i] & 0x0f
		if t := scan[i].ta; t > maxTh || (d.baseline && t > 1) {
			return FormatError("bad Ta value")
		}
	}
	// Section B.2.3 states that if there is more than one component then the
	// total H*V values in a scan must be <= 10.
	if d.nComp > 1 && totalHV > 10 {
		return FormatError("total sampling factors too large")
	}

	// zigStart and zigEnd are the spectral selection bounds.
	// ah and al are the successive approximation high and low values.
	// The spec calls these values Ss, Se, Ah and Al.
	//
	// For progressive JPEGs, these are the two more-or-less independent
	// aspects of progression. Spectral selection progression is when not
	// all of a block's 64 DCT coefficients are transmitted in one pass.
	// For example, three passes could transmit coefficient 0 (the DC
	// component), coefficients 1-5, and coefficients 6-63, in zig-zag
	// order. Successive approximation is when not all of the bits of a
	// band of coefficients are transmitted in one pass. For example,
	// three passes could transmit the 6 most significant bits, followed
	// by the second-least significant bit, followed by the least
	// significant bit.
	//
	// For sequential JPEGs, these parameters are hard-coded to 0/63/0/0, as
	// per table B.3.
	zigStart, zigEnd, ah, al := int32(0), int32(blockSize-1), uint32(0), uint32(0)
	if d.progressive {
		zigStart = int32(d.tmp[1+2*nComp])
		zigEnd = int32(d.tmp[2+2*nComp])
		ah = uint32(d.tmp[3+2*nComp] >> 4)
		al = uint32(d.tmp[3+2*nComp] & 0x0f)
		if (zigStart == 0 && zigEnd != 0) || zigStart > zigEnd || blockSize <= zigEnd {
			return FormatError("bad spectral selection bounds")
		}
		if zigStart != 0 && nComp != 1 {
			return FormatError("progressive AC coefficients for more than one component")
		}
		if ah != 0 && ah != al+1 {
			return FormatError("bad successive approximation values")
		}
	}

	// mxx and myy are the number of MCUs (Minimum Coded Units) in the image.
	h0, v0 := d.comp[0].h, d.comp[0].v // The h and v values from the Y components.
	mxx := (d.width + 8*h0 - 1) / (8 * h0)
	myy := (d.height + 8*v0 - 1) / (8 * v0)
	if d.img1 == nil && d.img3 == nil {
		if err := d.makeImg(); err != nil {
			return err
		}
	}
	if d.progressive {
		for i := 0; i < nComp; i++ {
			c := scan[i].compIndex
			if d.nonZero[c] == nil {
				hv := d.comp[c].h * d.comp[c].v
				d.nonZero[c] = make([]uint64, mxx*myy*hv)
				d.coeffs[c] = make([]int32, d.mcus.Dx()*d.mcus.Dy()*hv*d.n*d.n)
			}
		}
	}

	d.bits = bits{}
	mcu, expectedRST := 0, uint8(rst0Marker)
	var (
		// b is the decoded coefficients, in natural (not zig-zag) order.
		b  block
		dc [maxComponents]int32
		// bx and by are the location of the current block, in units of 8x8
		// blocks: the third block in the first row has (bx, by) = (2, 0).
		bx, by     int
		blockCount int
	)
	for my := 0; my < myy; my++ {
		for mx := 0; mx < mxx; mx++ {
			for i := 0; i < nComp; i++ {
				compIndex := int(scan[i].compIndex)
				hi := d.comp[compIndex].h
				vi := d.comp[compIndex].v
				for j := 0; j < hi*vi; j++ {
					// The blocks are traversed one MCU at a time. For 4:2:0 chroma
					// subsampling, there are four Y 8x8 blocks in every 16x16 MCU.
					//
					// For a sequential 32x16 pixel image, the Y blocks visiting order is:
					//	0 1 4 5
					//	2 3 6 7
					//
					// For progressive images, the interleaved scans (those with nComp > 1)
					// are traversed as above, but non-interleaved scans are traversed left
					// to right, top to bottom:
					//	0 1 2 3
					//	4 5 6 7
					// Only DC scans (zigStart == 0) can be interleaved. AC scans must have
					// only one component.
					//
					// To further complicate matters, for non-interleaved scans, there is no
					// data for any blocks that are inside the image at the MCU level but
					// outside the image at the pixel level. For example, a 24x16 pixel 4:2:0
					// progressive image consists of two 16x16 MCUs. The interleaved scans
					// will process 8 Y blocks:
					//	0 1 4 5
					//	2 3 6 7
					// The non-interleaved scans will process only 6 Y blocks:
					//	0 1 2
					//	3 4 5
					if nComp != 1 {
						bx = hi*mx + j%hi
						by = vi*my + j/hi
					} else {
						q := mxx * hi
						bx = blockCount % q
						by = blockCount / q
						blockCount++
						if bx*8 >= d.width || by*8 >= d.height {
							continue
						}
					}

					// t says where this block's coefficients go. A
					// sequential block outside the window is decoded, since
					// the next block's data follows it, and dropped.
					var t target
					if d.progressive {
						t.nonZero = &d.nonZero[compIndex][by*mxx*hi+bx]
						if k := d.kept(compIndex, bx, by); k >= 0 {
							t.kept = d.coeffs[compIndex][k : k+d.n*d.n]
						}
					} else if d.kept(compIndex, bx, by) >= 0 {
						b = block{}
						t.b = &b
					}

					if ah != 0 {
						if err := d.refine(&t, &d.huff[acTable][scan[i].ta], zigStart, zigEnd, 1<<al); err != nil {
							return err
						}
					} else {
						zig := zigStart
						if zig == 0 {
							zig++
							// Decode the DC coefficient, as specified in section F.2.2.1.
							value, err := d.decodeHuffman(&d.huff[dcTable][scan[i].td])
							if err != nil {
								return err
							}
							if value > 16 {
								return UnsupportedError("excessive DC component")
							}
							dcDelta, err := d.receiveExtend(value)
							if err != nil {
								return err
							}
							dc[compIndex] += dcDelta
							d.set(&t, 0, dc[compIndex]<<al)
						}

						if zig <= zigEnd && d.eobRun > 0 {
							d.eobRun--
						} else {
							// Decode the AC coefficients, as specified in section F.2.2.2.
							huff := &d.huff[acTable][scan[i].ta]
							for ; zig <= zigEnd; zig++ {
								value, err := d.decodeHuffman(huff)
								if err != nil {
									return err
								}
								val0 := value >> 4
								val1 := value & 0x0f
								if val1 != 0 {
									zig += int32(val0)
									if zig > zigEnd {
										break
									}
									ac, err := d.receiveExtend(val1)
									if err != nil {
										return err
									}
									d.set(&t, zig, ac<<al)
								} else {
									if val0 != 0x0f {
										d.eobRun = uint16(1 << val0)
										if val0 != 0 {
											bits, err := d.decodeBits(int32(val0))
											if err != nil {
												return err
											}
											d.eobRun |= uint16(bits)
										}
										d.eobRun--
										break
									}
									zig += 0x0f
								}
							}
						}
					}

					// A progressive image's blocks are reconstructed once all
					// its scans are read, by reconstructProgressiveImage.
					if t.b != nil {
						if err := d.reconstructBlock(&b, bx, by, compIndex); err != nil {
							return err
						}
					}
				} // for j
			} // for i
			mcu++
			if d.ri > 0 && mcu%d.ri == 0 && mcu < mxx*myy {
				// For well-formed input, the RST[0-7] restart marker follows
				// immediately. For corrupt input, call findRST to try to
				// resynchronize.
				if err := d.readFull(d.tmp[:2]); err != nil {
					return err
				} else if d.tmp[0] != 0xff || d.tmp[1] != expectedRST {
					if err := d.findRST(expectedRST); err != nil {
						return err
					}
				}
				expectedRST++
				if expectedRST == rst7Marker+1 {
					expectedRST = rst0Marker
				}
				// Reset the Huffman decoder.
				d.bits = bits{}
				// Reset the DC components, as per section F.2.1.3.1.
				dc = [maxComponents]int32{}
				// Reset the progressive decoder state, as per section G.1.2.2.
				d.eobRun = 0
			}
		} // for mx
	} // for my

	return nil
}

// target is where one block's coefficients go: a sequential block's whole
// block (b), or a progressive block's non-zero bits and its kept
// coefficients (nil outside the window). A zero target drops them.
type target struct {
	b       *block
	nonZero *uint64
	kept    []int32
}

// set records coefficient zig (in zig-zag order) as v.
func (d *decoder) set(t *target, zig int32, v int32) {
	u := unzig[zig]
	if t.b != nil {
		t.b[u] = v
		return
	}
	if t.nonZero == nil {
		return
	}
	if v != 0 {
		*t.nonZero |= 1 << zig
	}
	if t.kept != nil {
		if k := d.keptIndex(u); k >= 0 {
			t.kept[k] = v
		}
	}
}

// refine decodes a successive approximation refinement block, as specified in
// section G.1.2.
func (d *decoder) refine(t *target, h *huffman, zigStart, zigEnd, delta int32) error {
	// Refining a DC component is trivial.
	if zigStart == 0 {
		if zigEnd != 0 {
			panic("unreachable")
		}
		bit, err := d.decodeBit()
		if err != nil {
			return err
		}
		if bit && t.kept != nil {
			t.kept[0] |= delta
		}
		return nil
	}

	// Refining AC components is more complicated; see sections G.1.2.2 and G.1.2.3.
	zig := zigStart
	if d.eobRun == 0 {
	loop:
		for ; zig <= zigEnd; zig++ {
			z := int32(0)
			value, err := d.decodeHuffman(h)
			if err != nil {
				return err
			}
			val0 := value >> 4
			val1 := value & 0x0f

			switch val1 {
			case 0:
				if val0 != 0x0f {
					d.eobRun = uint16(1 << val0)
					if val0 != 0 {
						bits, err := d.decodeBits(int32(val0))
						if err != nil {
							return err
						}
						d.eobRun |= uint16(bits)
					}
					break loop
				}
			case 1:
				z = delta
				bit, err := d.decodeBit()
				if err != nil {
					return err
				}
				if !bit {
					z = -z
				}
			default:
				return FormatError("unexpected Huffman code")
			}

			zig, err = d.refineNonZeroes(t, zig, zigEnd, int32(val0), delta)
			if err != nil {
				return err
			}
			if zig > zigEnd {
				return FormatError("too many coefficients")
			}
			if z != 0 {
				d.set(t, zig, z)
			}
		}
	}
	if d.eobRun > 0 {
		d.eobRun--
		if _, err := d.refineNonZeroes(t, zig, zigEnd, -1, delta); err != nil {
			return err
		}
	}
	return nil
}

// refineNonZeroes refines non-zero entries of the block in zig-zag order. If nz >= 0,
// the first nz zero entries are skipped over.
func (d *decoder) refineNonZeroes(t *target, zig, zigEnd, nz, delta int32) (int32, error) {
	for ; zig <= zigEnd; zig++ {
		if *t.nonZero&(1<<zig) == 0 {
			if nz == 0 {
				break
			}
			nz--
			continue
		}
		bit, err := d.decodeBit()
		if err != nil {
			return 0, err
		}
		if !bit || t.kept == nil {
			continue
		}
		k := d.keptIndex(unzig[zig])
		if k < 0 {
			continue
		}
		if t.kept[k] >= 0 {
			t.kept[k] += delta
		} else {
			t.kept[k] -= delta
		}
	}
	return zig, nil
}

// reconstructProgressiveImage reconstructs the kept blocks once every scan
// has been read.
func (d *decoder) reconstructProgressiveImage() error {
	n := d.n
	for i := 0; i < d.nComp; i++ {
		if d.coeffs[i] == nil {
			continue
		}
		v := 8 * d.comp[0].v / d.comp[i].v
		h := 8 * d.comp[0].h / d.comp[i].h
		hi, vi := d.comp[i].h, d.comp[i].v
		for by := d.mcus.Min.Y * vi; by < d.mcus.Max.Y*vi && by*v < d.height; by++ {
			for bx := d.mcus.Min.X * hi; bx < d.mcus.Max.X*hi && bx*h < d.width; bx++ {
				k := d.kept(i, bx, by)
				var b block
				for row := range n {
					copy(b[8*row:8*row+n], d.coeffs[i][k+row*n:k+row*n+n])
				}
				if err := d.reconstructBlock(&b, bx, by, i); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// reconstructBlock dequantizes, performs the inverse DCT, at 1/scale, and
// stores the block to the image.
func (d *decoder) reconstructBlock(b *block, bx, by, compIndex int) error {
	qt := &d.quant[d.comp[compIndex].tq]
	for zig := 0; zig < blockSize; zig++ {
		b[unzig[zig]] *= qt[zig]
	}
	n := d.n
	h, v := d.comp[compIndex].h, d.comp[compIndex].v
	x, y := n*(bx-d.mcus.Min.X*h), n*(by-d.mcus.Min.Y*v)
	dst, stride := []byte(nil), 0
	if d.nComp == 1 {
		dst, stride = d.img1.Pix[y*d.img1.Stride+x:], d.img1.Stride
	} else {
		switch compIndex {
		case 0:
			dst, stride = d.img3.Y[y*d.img3.YStride+x:], d.img3.YStride
		case 1:
			dst, stride = d.img3.Cb[y*d.img3.CStride+x:], d.img3.CStride
		case 2:
			dst, stride = d.img3.Cr[y*d.img3.CStride+x:], d.img3.CStride
		case 3:
			dst, stride = d.blackPix[y*d.blackStride+x:], d.blackStride
		default:
			return UnsupportedError("too many components")
		}
	}
	if n < 8 {
		d.scaledIDCT(b, dst, stride)
		return nil
	}
	idct(b)
	// Level shift by +128, clip to [0, 255], and write to dst.
	for y := 0; y < 8; y++ {
		y8 := y * 8
		yStride := y * stride
		for x := 0; x < 8; x++ {
			c := b[y8+x]
			if c < -128 {
				c = 0
			} else if c > 127 {
				c = 255
			} else {
				c += 128
			}
			dst[yStride+x] = uint8(c)
		}
	}
	return nil
}

// scaledIDCT writes the n×n inverse DCT of b's n×n lowest frequencies
// (dequantized) to dst, level-shifted and clipped.
func (d *decoder) scaledIDCT(b *block, dst []byte, stride int) {
	n := d.n
	var rows [8][8]float64 // rows[v][x]: the transform along x of row v
	for v := range n {
		for x := range n {
			s := 0.0
			for u := range n {
				s += d.cos[x][u] * float64(b[8*v+u])
			}
			rows[v][x] = s
		}
	}
	for y := range n {
		for x := range n {
			s := 128.0
			for v := range n {
				s += d.cos[y][v] * rows[v][x]
			}
			dst[y*stride+x] = uint8(math.Round(max(0, min(255, s))))
		}
	}
}

// findRST advances past the next RST restart marker that matches expectedRST.
// Other than I/O errors, it is also an error if we encounter an {0xFF, M}
// two-byte marker sequence where M is not 0x00, 0xFF or the expectedRST.
//
// This is similar to libjpeg's jdmarker.c's next_marker function.
// https://github.com/libjpeg-turbo/libjpeg-turbo/blob/2dfe6c0fe9e18671105e94f7cbf044d4a1d157e6/jdmarker.c#L892-L935
//
// Precondition: d.tmp[:2] holds the next two bytes of JPEG-encoded input
// (input in the d.readFull sense).
func (d *decoder) findRST(expectedRST uint8) error {
	for {
		// i is the index such that, at the bottom of the loop, we read 2-i
		// bytes into d.tmp[i:2], maintaining the invariant that d.tmp[:2]
		// holds the next two bytes of JPEG-encoded input. It is either 0 or 1,
		// so that each iteration advances by 1 or 2 bytes (or returns).
		i := 0

		if d.tmp[0] == 0xff {
			if d.tmp[1] == expectedRST {
				return nil
			} else if d.tmp[1] == 0xff {
				i = 1
			} else if d.tmp[1] != 0x00 {
				// libjpeg's jdmarker.c's jpeg_resync_to_restart does something
				// fancy here, treating RST markers within two (modulo 8) of
				// expectedRST differently from RST markers that are 'more
				// distant'. Until we see evidence that recovering from such
				// cases is frequent enough to be worth the complexity, we take
				// a simpler approach for now. Any marker that's not 0x00, 0xff
				// or expectedRST is a fatal FormatError.
				return FormatError("bad RST marker")
			}

		} else if d.tmp[1] == 0xff {
			d.tmp[0] = 0xff
			i = 1
		}

		if err := d.readFull(d.tmp[i:2]); err != nil {
			return err
		}
	}
}
