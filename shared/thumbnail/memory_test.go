//go:build linux

package thumbnail

import (
	"bufio"
	"bytes"
	"fmt"
	"image"
	"image/jpeg"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gen2brain/heic"
)

// TestPeakMemory measures the peak resident memory of one thumbnail, each
// case in a fresh process (this test binary again, running
// TestPeakMemoryChild): the kernel's high-water mark of the process's
// resident set (VmHWM in /proc/self/status), what Lambda reports as "Max
// Memory Used" and what its MemorySize limits. It counts everything: the Go
// heap with the garbage not yet collected, stacks, the runtime, wazero's
// compiled code, not only live objects (as runtime.MemStats would).
//
//	THUMBNAIL_PEAK_MEMORY=1 go test -run TestPeakMemory -v ./shared/thumbnail/
//
// The progressive JPEG case needs jpegtran (Debian: libjpeg-turbo-progs) or
// ImageMagick's convert; the HEIC ones heif-enc.
func TestPeakMemory(t *testing.T) {
	if os.Getenv("THUMBNAIL_PEAK_MEMORY") == "" {
		t.Skip("set THUMBNAIL_PEAK_MEMORY=1 to measure peak memory (about a minute)")
	}
	dir := t.TempDir()
	file := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	jpg := file("24mp.jpg", benchJPEG24MP(t))
	cases := []struct{ name, mode, path string }{
		{"jpeg-24MP baseline", "ours", jpg},
		{"jpeg-24MP baseline", "imaging", jpg},
		{"jpeg-24MP baseline", "decode", jpg},
	}
	if prog := progressive(t, jpg, filepath.Join(dir, "24mp-progressive.jpg")); prog != "" {
		cases = append(cases,
			struct{ name, mode, path string }{"jpeg-24MP progressive", "ours", prog},
			struct{ name, mode, path string }{"jpeg-24MP progressive", "imaging", prog})
	}
	if _, err := exec.LookPath("heif-enc"); err == nil {
		h12 := file("12mp.heic", benchHEIC12MP(t))
		h48 := file("48mp.heic", cachedHEIC(t, "photo-8064x6048-q50-v2.heic", 8064, 6048))
		cases = append(cases,
			struct{ name, mode, path string }{"heic-12MP", "ours", h12},
			struct{ name, mode, path string }{"heic-12MP", "imaging", h12},
			struct{ name, mode, path string }{"heic-12MP", "decode", h12},
			struct{ name, mode, path string }{"heic-12MP", "decodeHEIF", h12},
			struct{ name, mode, path string }{"heic (none)", "heifInit", h12},
			struct{ name, mode, path string }{"heic-48MP", "ours", h48},
			struct{ name, mode, path string }{"heic-48MP", "decode", h48})
	}
	for _, c := range cases {
		for _, env := range []string{"", "GOMEMLIMIT=100MiB"} {
			cmd := exec.Command(os.Args[0], "-test.run=^TestPeakMemoryChild$", "-test.count=1", "-test.v")
			cmd.Env = append(os.Environ(), "THUMBNAIL_CHILD="+c.mode+":"+c.path)
			if env != "" {
				cmd.Env = append(cmd.Env, env)
			}
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%s %s: %v\n%s", c.name, c.mode, err, out)
			}
			i := bytes.Index(out, []byte("PEAK "))
			if i < 0 {
				t.Fatalf("%s %s: no result\n%s", c.name, c.mode, out)
			}
			line, _, _ := bytes.Cut(out[i:], []byte("\n"))
			t.Logf("%-22s %-8s %-18s %s", c.name, c.mode, env, line)
		}
	}
}

func progressive(t *testing.T, src, dst string) string {
	t.Helper()
	if _, err := exec.LookPath("jpegtran"); err == nil {
		out, err := exec.Command("jpegtran", "-progressive", "-copy", "all", "-outfile", dst, src).CombinedOutput()
		if err != nil {
			t.Fatalf("jpegtran: %v\n%s", err, out)
		}
		return dst
	}
	if _, err := os.Stat("/usr/bin/convert"); err == nil {
		out, err := exec.Command("/usr/bin/convert", src, "-interlace", "JPEG", "-quality", "90", dst).CombinedOutput()
		if err != nil {
			t.Fatalf("convert: %v\n%s", err, out)
		}
		return dst
	}
	t.Log("no jpegtran or convert: no progressive JPEG case")
	return ""
}

// TestPeakMemoryChild is one measurement of TestPeakMemory.
func TestPeakMemoryChild(t *testing.T) {
	spec := os.Getenv("THUMBNAIL_CHILD")
	if spec == "" {
		t.Skip("run by TestPeakMemory")
	}
	mode, path, _ := strings.Cut(spec, ":")
	before := procStatus(t, "VmHWM")
	cpu0, _ := processCPUTime()
	start := time.Now()
	data, err := os.ReadFile(path) // as the Lambda reads the S3 object
	if err != nil {
		t.Fatal(err)
	}
	mimeType := "image/jpeg"
	if strings.HasSuffix(path, ".heic") {
		mimeType = "image/heic"
	}
	switch mode {
	case "ours":
		_, err = Generate(bytes.NewReader(data), mimeType)
	case "imaging":
		if mimeType == "image/heic" {
			_, err = heicImagingThumbnail(data)
		} else {
			_, err = imagingThumbnail(data)
		}
	case "decode":
		if mimeType == "image/heic" {
			_, err = heic.Decode(bytes.NewReader(data))
		} else {
			_, err = jpeg.Decode(bytes.NewReader(data))
		}
	case "heifInit": // compiling the module, nothing else
		_, _, err = heifInit()
	case "decodeHEIF": // this package's host of the same WASM module
		err = decodeHEIF(data, DefaultMaxPixels, func(image.Image) {})
	default:
		t.Fatalf("mode %q", mode)
	}
	if err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	cpu1, _ := processCPUTime()
	cpu := cpu1 - cpu0
	fmt.Printf("PEAK VmHWM %.1f MiB (process before: %.1f MiB), input %.1f MiB, %v wall, %v CPU\n",
		mib(procStatus(t, "VmHWM")), mib(before), float64(len(data))/(1<<20),
		elapsed.Round(time.Millisecond), cpu.Round(time.Millisecond))
}

func mib(kB int64) float64 { return float64(kB) / 1024 }

// procStatus reads a "kB" field of /proc/self/status.
func procStatus(t *testing.T, field string) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Skip("no /proc/self/status:", err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), field+":"); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no %s in /proc/self/status", field)
	return 0
}
