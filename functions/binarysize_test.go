package functions_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mocbuilders/moc-upload/local/stack"
)

// maxBinaryBytes is the largest a function's bootstrap may be, as AWS gets
// it (issue #10: every binary ≤ 20 MB). A package imported by package app
// is linked into every function, its package initialisation run at every
// cold start: docs/benchmarks.md "Cold start and binary size" says what
// each costs and how the functions link only what they use.
const maxBinaryBytes = 20_000_000

// TestBinarySizes builds every function (every functions/<Name>/main.go)
// as `make build` does, for linux/arm64 with the Makefile's GOFLAGS_LAMBDA,
// and fails when a bootstrap is over maxBinaryBytes. It logs the sizes.
func TestBinarySizes(t *testing.T) {
	if testing.Short() {
		t.Skip("builds every function (about a minute without a warm build cache)")
	}
	root, err := stack.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	flags, err := lambdaBuildFlags(root)
	if err != nil {
		t.Fatal(err)
	}
	mains, err := filepath.Glob(filepath.Join(root, "functions", "*", "main.go"))
	if err != nil || len(mains) == 0 {
		t.Fatalf("no functions/*/main.go (%v)", err)
	}
	var functions []string
	for _, m := range mains {
		functions = append(functions, filepath.Base(filepath.Dir(m)))
	}
	slices.Sort(functions)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	dir := t.TempDir()
	sizes := make([]int64, len(functions))
	errs := make([]error, len(functions))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 2) // two builds at a time keep the machine usable
	for i, fn := range functions {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			out := filepath.Join(dir, fn)
			if errs[i] = buildFor(ctx, root, fn, out, "linux", "arm64", flags); errs[i] != nil {
				return
			}
			info, err := os.Stat(out)
			if err != nil {
				errs[i] = err
				return
			}
			sizes[i] = info.Size()
		})
	}
	wg.Wait()
	for i, fn := range functions {
		if errs[i] != nil {
			t.Errorf("%s: %v", fn, errs[i])
			continue
		}
		t.Logf("%-18s %11d bytes (%.2f MB)", fn, sizes[i], float64(sizes[i])/1e6)
		if sizes[i] > maxBinaryBytes {
			t.Errorf("%s: bootstrap is %d bytes, over %d: a package that only some functions need is linked into it (docs/benchmarks.md \"Cold start and binary size\")",
				fn, sizes[i], maxBinaryBytes)
		}
	}
}

// goflagsLine is the Makefile's GOFLAGS_LAMBDA, the flags `make build`
// and `sam build` (build-<LogicalId>) give go build.
var goflagsLine = regexp.MustCompile(`(?m)^GOFLAGS_LAMBDA\s*:?=\s*(.*)$`)

// lambdaBuildFlags reads GOFLAGS_LAMBDA from the Makefile and splits it as
// the shell does (words; single or double quotes group).
func lambdaBuildFlags(root string) ([]string, error) {
	mk, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		return nil, err
	}
	m := goflagsLine.FindSubmatch(mk)
	if m == nil {
		return nil, fmt.Errorf("no GOFLAGS_LAMBDA line in the Makefile")
	}
	var words []string
	var cur strings.Builder
	inWord := false
	var quote rune
	for _, r := range strings.TrimSpace(string(m[1])) {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			cur.WriteRune(r)
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == ' ' || r == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("GOFLAGS_LAMBDA: unbalanced quote: %s", m[1])
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// buildFor builds functions/<function> into out for goos/goarch with
// CGO_ENABLED=0 and flags.
func buildFor(ctx context.Context, root, function, out, goos, goarch string, flags []string) error {
	goCmd, err := stack.GoCommand()
	if err != nil {
		return err
	}
	args := append(append([]string{"build"}, flags...), "-o", out, "./functions/"+function)
	cmd := exec.CommandContext(ctx, goCmd, args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+goos, "GOARCH="+goarch)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, strings.TrimSpace(string(b)))
	}
	return nil
}
