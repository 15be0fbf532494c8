package deploy_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/surgeml/surge/internal/deploy"
	"github.com/surgeml/surge/internal/testenv"
)

func TestParseVersion(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want deploy.GlibcVersion
	}{
		{"2.34", deploy.GlibcVersion{Major: 2, Minor: 34}},
		{"GLIBC_2.34", deploy.GlibcVersion{Major: 2, Minor: 34}},
		{"GLIBC_2.2.5", deploy.GlibcVersion{Major: 2, Minor: 2, Patch: 5}},
		{"2.4", deploy.GlibcVersion{Major: 2, Minor: 4}},
		{"2.34.1", deploy.GlibcVersion{Major: 2, Minor: 34, Patch: 1}},
		{"3.0", deploy.GlibcVersion{Major: 3}},
	} {
		got, err := deploy.ParseGlibcVersion(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseVersion(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "2", "GLIBC_PRIVATE", "2.x", "2.34.1.1", "2.-1", "2.+3", "2..3", "GLIBCXX_3.4.29x"} {
		if v, err := deploy.ParseGlibcVersion(bad); err == nil {
			t.Errorf("ParseVersion(%q) = %v, want an error", bad, v)
		}
	}
}

func TestCompare(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"2.34", "2.34", 0},
		{"2.34", "2.34.0", 0},
		{"2.4", "2.34", -1}, // numerically, not as text
		{"2.34", "2.4", 1},
		{"2.34.1", "2.34", 1},
		{"2.34", "2.34.1", -1},
		{"2.2.5", "2.3", -1},
		{"2.35", "2.34.9", 1},
		{"3.0", "2.99", 1},
		{"2.36", deploy.GlibcAL2023, 1},
		{"2.17", deploy.GlibcAL2023, -1},
	} {
		a, err := deploy.ParseGlibcVersion(tc.a)
		if err != nil {
			t.Fatal(err)
		}
		b, err := deploy.ParseGlibcVersion(tc.b)
		if err != nil {
			t.Fatal(err)
		}
		if got := a.Compare(b); got != tc.want {
			t.Errorf("%s vs %s = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
	if s := (deploy.GlibcVersion{Major: 2, Minor: 2, Patch: 5}).String(); s != "2.2.5" {
		t.Errorf("String = %q", s)
	}
	if s := (deploy.GlibcVersion{Major: 2, Minor: 34}).String(); s != "2.34" {
		t.Errorf("String = %q", s)
	}
}

// A real binary over the limit: arc4random came in glibc 2.36, which this
// build machine (Debian 12) has and Amazon Linux 2023 does not.
func TestRefusesNewerSymbol(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("needs a Linux toolchain")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "new.c")
	os.WriteFile(src, []byte("#include <stdio.h>\n#include <stdlib.h>\nint main(void) { printf(\"%u\\n\", arc4random()); return 0; }\n"), 0o644)
	bin := filepath.Join(dir, "new")
	if out, err := exec.Command("gcc", "-o", bin, src).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	syms, err := deploy.GlibcNeeds(bin)
	if err != nil {
		t.Fatal(err)
	}
	if len(syms) == 0 || syms[0].Name != "arc4random" || syms[0].Version != (deploy.GlibcVersion{Major: 2, Minor: 36}) || !strings.HasPrefix(syms[0].Library, "libc.so") {
		t.Fatalf("Needs = %v, want arc4random@GLIBC_2.36 from libc first", syms)
	}

	err = deploy.CheckGlibc(bin, deploy.GlibcAL2023)
	var tooNew *deploy.GlibcTooNewError
	if !errors.As(err, &tooNew) {
		t.Fatalf("Check = %v, want a *TooNewError", err)
	}
	if tooNew.Highest != (deploy.GlibcVersion{Major: 2, Minor: 36}) || len(tooNew.Symbols) != 1 || tooNew.Symbols[0].Name != "arc4random" {
		t.Errorf("error %+v", tooNew)
	}
	for _, want := range []string{bin, "2.36", "2.34", "arc4random"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	// The same binary is fine where 2.36 is allowed.
	if err := deploy.CheckGlibc(bin, "2.36"); err != nil {
		t.Errorf("Check(2.36) = %v", err)
	}
}

// What the instances run needs no newer glibc than Amazon Linux 2023's,
// for either CPU: the worker (pure Go, which still imports the C
// library's loader to open ONNX Runtime) and ONNX Runtime's own library,
// which needs 2.27.
func TestInstancesFilesFitAL2023(t *testing.T) {
	testenv.SkipShort(t, "building the worker and reading ONNX Runtime")
	for _, arch := range []string{"amd64", "arm64"} {
		bin := filepath.Join(t.TempDir(), "worker")
		cmd := exec.Command("go", "build", "-o", bin, "./worker")
		cmd.Dir = testenv.Root(t)
		cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH="+arch, "CGO_ENABLED=0", "CC=false")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build ./worker for linux/%s: %v\n%s", arch, err, out)
		}
		if err := deploy.CheckGlibc(bin, deploy.GlibcAL2023); err != nil {
			t.Errorf("the worker for linux/%s: %v", arch, err)
		}
		lib := testenv.RuntimeLibFor(t, arch)
		syms, err := deploy.GlibcNeeds(lib)
		if err != nil {
			t.Fatal(err)
		}
		if len(syms) == 0 || syms[0].Version != (deploy.GlibcVersion{Major: 2, Minor: 27}) {
			t.Errorf("ONNX Runtime for linux/%s needs %v first; want glibc 2.27, as its release says", arch, syms[:min(len(syms), 1)])
		}
		if err := deploy.CheckGlibc(lib, deploy.GlibcAL2023); err != nil {
			t.Errorf("ONNX Runtime for linux/%s: %v", arch, err)
		}
	}
}

// A binary without dynamic symbols needs no glibc at all.
func TestStaticBinary(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\nfunc main() {}\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module static\n\ngo 1.22\n"), 0o644)
	bin := filepath.Join(dir, "static")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	if syms, err := deploy.GlibcNeeds(bin); err != nil || len(syms) != 0 {
		t.Fatalf("Needs = %v, %v", syms, err)
	}
	if err := deploy.CheckGlibc(bin, deploy.GlibcAL2023); err != nil {
		t.Fatal(err)
	}
	// Not an ELF file at all is an error, not a pass.
	if err := deploy.CheckGlibc(filepath.Join(dir, "main.go"), deploy.GlibcAL2023); err == nil {
		t.Error("Check of a Go source file passed")
	}
}
