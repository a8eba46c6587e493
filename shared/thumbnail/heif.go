package thumbnail

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"image"
	"io"
	"runtime/debug"
	"sync"
	_ "unsafe" // for go:linkname

	_ "github.com/gen2brain/heic" // the WASM build of libheif and libde265: heifWasm
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// heifWasm is gen2brain/heic's gzipped WASM module (libheif 1.18.2 and
// libde265 1.0.15 with a small C shim, lib/heif.c), used here with its own
// host rather than through heic.Decode, whose host (v0.4.5) costs more than
// twice the memory and damages the first pixels:
//   - it lets wazero grow the module's memory in the Go heap by append,
//     copying it at each step: for a 12-megapixel picture 300 MB of garbage
//     and a 233 MiB peak, where this host, with the memory mapped outside
//     the Go heap and unmapped as soon as the thumbnail is made, peaks at
//     100 MiB (docs/benchmarks.md, "Thumbnail: 300x300 JPEG from a camera
//     picture");
//   - it returns a view of that memory after free()ing the buffer under it,
//     and malloc writes its free-list pointers over the first 24 bytes;
//   - its dynamic-library path, taken by any dynamically linked binary on a
//     machine with libheif.so, never releases the decoded image.
//
// The module exports malloc, free and decode (see heif.c in the
// gen2brain/heic module); the linkname ties this package to that version of
// gen2brain/heic (go.mod): a rename there fails the build, loudly.
//
//go:linkname heifWasm github.com/gen2brain/heic.heifWasm
var heifWasm []byte

// The values the shim returns (libheif's enums).
const (
	heifColorspaceYCbCr      = 0
	heifColorspaceRGB        = 1
	heifColorspaceMonochrome = 2

	heifChromaMonochrome = 0
	heifChroma420        = 1
	heifChroma422        = 2
	heifChroma444        = 3
)

// heifBytesPerPixel bounds the module's memory: the decoded picture exists
// three times in it (libde265's frame, libheif's image, the shim's copy:
// 1.5 bytes a pixel each for 4:2:0), with libde265's per-block data and the
// input on top: 6.7 bytes a pixel measured at 12 and 48 megapixels. A
// picture within MaxPixels stays well under this limit; a hostile file
// that would pass it is refused (malloc fails in the module, the decode
// returns an error) before it costs the machine more.
const (
	heifBytesPerPixel = 16
	heifMemoryBase    = 64 << 20
	wasmMaxMemory     = 4 << 30 // 65536 pages of 64 KiB: all wasm32 can address
)

var heifRuntime struct {
	once     sync.Once
	runtime  wazero.Runtime
	compiled wazero.CompiledModule
	err      error
}

// heifInit compiles the module, once per process (about 0.3 s).
func heifInit() (wazero.Runtime, wazero.CompiledModule, error) {
	r := &heifRuntime
	r.once.Do(func() {
		ctx := context.Background()
		zr, err := gzip.NewReader(bytes.NewReader(heifWasm))
		if err != nil {
			r.err = fmt.Errorf("thumbnail: heif module: %w", err)
			return
		}
		wasm, err := io.ReadAll(zr)
		if err != nil {
			r.err = fmt.Errorf("thumbnail: heif module: %w", err)
			return
		}
		rt := wazero.NewRuntime(ctx)
		if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
			r.err = fmt.Errorf("thumbnail: wasi: %w", err)
			return
		}
		cm, err := rt.CompileModule(ctx, wasm)
		if err != nil {
			r.err = fmt.Errorf("thumbnail: heif module: %w", err)
			return
		}
		r.runtime, r.compiled = rt, cm
		// Compiling leaves some 40 MiB of garbage in the Go heap: give it
		// back now, before the decode maps its memory beside it.
		debug.FreeOSMemory()
	})
	return r.runtime, r.compiled, r.err
}

// decodeHEIF decodes a HEIF file (libheif applies its irot, imir and clap
// transformations) and calls use with the picture, which is valid only
// during the call: its pixels are in the module's memory, unmapped after.
func decodeHEIF(data []byte, maxPixels int, use func(image.Image)) error {
	rt, cm, err := heifInit()
	if err != nil {
		return err
	}
	limit := min(uint64(heifMemoryBase)+heifBytesPerPixel*uint64(maxPixels), wasmMaxMemory)
	ctx := experimental.WithMemoryAllocator(context.Background(), newLinearMemoryAllocator(limit))
	mod, err := rt.InstantiateModule(ctx, cm,
		wazero.NewModuleConfig().WithName("").WithStartFunctions("_initialize"))
	if err != nil {
		return fmt.Errorf("thumbnail: heif module: %w", err)
	}
	defer mod.Close(ctx)
	h := heifModule{ctx, mod, mod.ExportedFunction("malloc"), mod.ExportedFunction("decode")}
	if h.malloc == nil || h.decode == nil {
		return errors.New("thumbnail: heif module: no malloc or decode export")
	}

	in, err := h.alloc(len(data))
	if err != nil {
		return err
	}
	if !mod.Memory().Write(in, data) {
		return errors.New("thumbnail: heif module: write outside memory")
	}
	res, err := h.alloc(5 * 4) // width, height, colorspace, chroma, premultiplied
	if err != nil {
		return err
	}

	// The header first: the picture's size decides whether to decode it.
	if err := h.call(in, len(data), true, res, 0); err != nil {
		return err
	}
	var v [5]uint32
	for i := range v {
		var ok bool
		if v[i], ok = mod.Memory().ReadUint32Le(res + uint32(4*i)); !ok {
			return errors.New("thumbnail: heif module: read outside memory")
		}
	}
	width, height, colorspace, chroma, premultiplied := int(v[0]), int(v[1]), v[2], v[3], v[4] == 1
	if err := checkPixels(width, height, maxPixels); err != nil {
		return err
	}

	rect := image.Rect(0, 0, width, height)
	var size, stride, cstride, ch int
	ratio := image.YCbCrSubsampleRatio444
	switch {
	case colorspace == heifColorspaceYCbCr && chroma == heifChromaMonochrome,
		// (libheif 1.18 fails to decode to this one: ErrDecode below)
		colorspace == heifColorspaceMonochrome:
		stride = align16(width)
		size = stride * height
	case colorspace == heifColorspaceYCbCr:
		cw := width
		ch = height
		switch chroma {
		case heifChroma420:
			ratio, cw, ch = image.YCbCrSubsampleRatio420, (width+1)/2, (height+1)/2
		case heifChroma422:
			ratio, cw = image.YCbCrSubsampleRatio422, (width+1)/2
		case heifChroma444:
		default:
			return fmt.Errorf("%w: heif: chroma format %d", ErrDecode, chroma)
		}
		stride, cstride = align16(width), align16(cw)
		size = stride*height + 2*cstride*ch
	case colorspace == heifColorspaceRGB: // interleaved RGBA
		stride = align16(4 * width)
		size = stride * height
	default:
		return fmt.Errorf("%w: heif: colorspace %d", ErrDecode, colorspace)
	}
	out, err := h.alloc(size)
	if err != nil {
		return err
	}
	if err := h.call(in, len(data), false, res, out); err != nil {
		return err
	}
	pix, ok := mod.Memory().Read(out, uint32(size))
	if !ok {
		return errors.New("thumbnail: heif module: read outside memory")
	}

	var img image.Image
	switch {
	case colorspace == heifColorspaceRGB && premultiplied:
		img = &image.RGBA{Pix: pix, Stride: stride, Rect: rect}
	case colorspace == heifColorspaceRGB:
		img = &image.NRGBA{Pix: pix, Stride: stride, Rect: rect}
	case cstride == 0:
		img = &image.Gray{Pix: pix, Stride: stride, Rect: rect}
	default:
		y, c := stride*height, cstride*ch
		img = &image.YCbCr{
			Y: pix[:y:y], Cb: pix[y : y+c : y+c], Cr: pix[y+c : y+2*c : y+2*c],
			YStride: stride, CStride: cstride, SubsampleRatio: ratio, Rect: rect,
		}
	}
	use(img)
	return nil
}

// align16 is the row alignment of libheif's planes (and so of the shim's
// copies).
func align16(n int) int { return (n + 15) &^ 15 }

type heifModule struct {
	ctx            context.Context
	mod            api.Module
	malloc, decode api.Function
}

func (h heifModule) alloc(n int) (uint32, error) {
	r, err := h.malloc.Call(h.ctx, uint64(n))
	if err != nil {
		return 0, fmt.Errorf("thumbnail: heif module: malloc: %w", err)
	}
	if r[0] == 0 {
		return 0, fmt.Errorf("%w: heif: out of memory for %d bytes", ErrTooLarge, n)
	}
	return uint32(r[0]), nil
}

// call runs the shim's decode (configOnly: read the header only).
func (h heifModule) call(in uint32, n int, configOnly bool, res, out uint32) error {
	cfg := uint64(0)
	if configOnly {
		cfg = 1
	}
	r, err := h.decode.Call(h.ctx, uint64(in), uint64(n), cfg,
		uint64(res), uint64(res+4), uint64(res+8), uint64(res+12), uint64(res+16), uint64(out))
	if err != nil {
		// A trap: libheif or libde265 went out of bounds, or ran out of memory.
		return fmt.Errorf("%w: heif: %w", ErrDecode, err)
	}
	if r[0] == 0 {
		return fmt.Errorf("%w: heif: libheif cannot decode it", ErrDecode)
	}
	return nil
}
