package thumbnail

import (
	"fmt"
	"image"
	"image/color"
	"testing"

	"github.com/disintegration/imaging"
)

// toYCbCr converts img to a YCbCr picture with the given subsampling.
func toYCbCr(img image.Image, ratio image.YCbCrSubsampleRatio) *image.YCbCr {
	b := img.Bounds()
	out := image.NewYCbCr(b, ratio)
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			yy, cb, cr := color.RGBToYCbCr(uint8(r>>8), uint8(g>>8), uint8(bl>>8))
			out.Y[out.YOffset(x, y)] = yy
			// The chroma sample of a block: the last pixel written wins,
			// which is enough for smooth content.
			out.Cb[out.COffset(x, y)], out.Cr[out.COffset(x, y)] = cb, cr
		}
	}
	return out
}

// TestBoxReductionMatchesImaging: every chroma subsampling, offsets into a
// sub-image (odd origins), odd and even reduction factors: the thumbnail
// matches imaging.Thumbnail's of the same picture.
func TestBoxReductionMatchesImaging(t *testing.T) {
	src := imaging.Clone(photoLike(1900, 1500, 3))
	ratios := []image.YCbCrSubsampleRatio{
		image.YCbCrSubsampleRatio444, image.YCbCrSubsampleRatio422, image.YCbCrSubsampleRatio420,
		image.YCbCrSubsampleRatio440, image.YCbCrSubsampleRatio411, image.YCbCrSubsampleRatio410,
	}
	for _, ratio := range ratios {
		full := toYCbCr(src, ratio)
		for _, r := range []image.Rectangle{
			full.Rect,                     // 1500 square: k = 2
			image.Rect(13, 7, 1900, 1500), // odd origin: k = 2
			image.Rect(1, 3, 1852, 1803),  // k = 3 (odd): chroma spans overlap
		} {
			sub := full.SubImage(r).(*image.YCbCr)
			t.Run(fmt.Sprintf("%v %v", ratio, r), func(t *testing.T) {
				want := imaging.Thumbnail(sub, DefaultSize, DefaultSize, imaging.Lanczos)
				got := squareThumbnail(sub, DefaultSize)
				if p := psnr(got, want); p < 40 {
					t.Errorf("PSNR %.1f dB against imaging.Thumbnail, want >= 40", p)
				}
			})
		}
	}
}

// TestSpans checks the plane ranges against image.YCbCr's own indexing:
// output i must cover exactly the chroma samples COffset gives for its
// columns.
func TestSpans(t *testing.T) {
	for _, ratio := range []image.YCbCrSubsampleRatio{image.YCbCrSubsampleRatio444, image.YCbCrSubsampleRatio420, image.YCbCrSubsampleRatio411} {
		sub := map[image.YCbCrSubsampleRatio]int{image.YCbCrSubsampleRatio444: 1, image.YCbCrSubsampleRatio420: 2, image.YCbCrSubsampleRatio411: 4}[ratio]
		for _, origin := range []int{0, 1, 3, 6} {
			img := image.NewYCbCr(image.Rect(origin, 0, origin+100, 1), ratio)
			for _, k := range []int{2, 3, 5} {
				start := origin + 7
				for i, s := range spans(10, start, k, sub, origin) {
					lo, hi := len(img.Cb), -1
					for x := start + i*k; x < start+(i+1)*k; x++ {
						lo, hi = min(lo, img.COffset(x, 0)), max(hi, img.COffset(x, 0))
					}
					if s.lo != lo || s.hi != hi+1 {
						t.Errorf("%v origin %d k %d: output %d covers %v, want [%d, %d)", ratio, origin, k, i, s, lo, hi+1)
					}
				}
			}
		}
	}
}

func TestParallelRowsRaisesPanics(t *testing.T) {
	defer func() {
		if v := recover(); v != "boom" {
			t.Errorf("recovered %v, want boom", v)
		}
	}()
	parallelRows(100, func(j0, _ int) {
		if j0 > 0 {
			panic("boom")
		}
	})
	t.Error("no panic")
}
