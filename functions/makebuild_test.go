package functions_test

import (
	"debug/elf"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
)

// `sam build` builds each function by running `make build-<LogicalId>`
// with ARTIFACTS_DIR set (Metadata BuildMethod: makefile; samconfig.toml
// has build_in_source, so in the repository itself). Every function of
// the template must build that way into a static linux/arm64 executable
// named bootstrap (Runtime provided.al2023, Architectures arm64).
func TestMakeBuildsEveryFunction(t *testing.T) {
	fns := slices.Sorted(maps.Keys(render(t, modes()["create/jwt"]).functions()))
	sem := make(chan struct{}, 2) // the machine's cores
	for _, f := range fns {
		t.Run(f, func(t *testing.T) {
			t.Parallel()
			sem <- struct{}{}
			defer func() { <-sem }()
			dir := t.TempDir()
			cmd := exec.Command("make", "-s", "build-"+f+"Function", "ARTIFACTS_DIR="+dir)
			cmd.Dir = ".."
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("make build-%sFunction: %v\n%s", f, err, out)
			}
			bin, err := elf.Open(filepath.Join(dir, "bootstrap"))
			if err != nil {
				t.Fatalf("ARTIFACTS_DIR/bootstrap: %v", err)
			}
			defer bin.Close()
			if bin.Machine != elf.EM_AARCH64 || bin.Type != elf.ET_EXEC || bin.OSABI != elf.ELFOSABI_NONE && bin.OSABI != elf.ELFOSABI_LINUX {
				t.Errorf("bootstrap: machine %v, type %v, OS ABI %v; want an arm64 Linux executable", bin.Machine, bin.Type, bin.OSABI)
			}
			for _, p := range bin.Progs {
				if p.Type == elf.PT_INTERP {
					t.Error("bootstrap is dynamically linked: provided.al2023 runs it, but CGO_ENABLED=0 and nodynamic should make it static")
				}
			}
		})
	}
}

// The build runs in the repository (build_in_source): SAM's makefile
// builder would otherwise copy the whole CodeUri, the repository root with
// the local stack's data (.local/) and tools (.bin/), once per function.
func TestSAMBuildsInSource(t *testing.T) {
	raw, err := os.ReadFile("../samconfig.toml")
	if err != nil {
		t.Fatal(err)
	}
	section := regexp.MustCompile(`(?s)\[default\.build\.parameters\](.*?)(\n\[|$)`).FindSubmatch(raw)
	if section == nil || !regexp.MustCompile(`(?m)^build_in_source\s*=\s*true\s*$`).Match(section[1]) {
		t.Error("samconfig.toml: [default.build.parameters] lacks build_in_source = true")
	}
}
