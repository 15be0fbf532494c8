//go:build arm64emu

// The arm64 build of `surge classify`, run under qemu-aarch64-static with
// the arm64 ONNX Runtime, labels the shared photos as this machine's
// build does: the Graviton worker's recognition, shown without Graviton.
// `make test-arm64` runs it; it needs Debian's qemu-user-static and the
// arm64 C libraries ONNX Runtime loads (dpkg --add-architecture arm64;
// apt-get install qemu-user-static libc6:arm64 libstdc++6:arm64), which
// `make test` does not.

package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/surgeml/surge/internal/testenv"
)

func TestArm64BuildClassifiesAsThisMachinesDoes(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("compares an arm64 build under emulation with this machine's amd64 build")
	}
	qemu, err := exec.LookPath("qemu-aarch64-static")
	if err != nil {
		t.Fatal("qemu-aarch64-static is not installed (Debian package qemu-user-static)")
	}
	if _, err := os.Stat("/lib/ld-linux-aarch64.so.1"); err != nil {
		t.Fatal("no arm64 C library for qemu to load (dpkg --add-architecture arm64; apt-get install libc6:arm64 libstdc++6:arm64)")
	}
	dir := t.TempDir()
	build := func(arch string) string {
		t.Helper()
		out := filepath.Join(dir, "surge-"+arch)
		cmd := exec.Command("go", "build", "-trimpath", "-o", out, ".")
		cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH="+arch, "CGO_ENABLED=0", "CC=false")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("building surge for linux/%s: %v\n%s", arch, err, b)
		}
		return out
	}
	native, arm := build("amd64"), build("arm64")
	lib := func(arch string) string { return testenv.RuntimeLibFor(t, arch) }
	models := testenv.Path(t, "models")
	gallery := filepath.Join(dir, "faces.gallery")
	enroll := exec.Command(native, "enroll", "-ort-lib", lib("amd64"), "-models", models,
		"-images", testenv.Path(t, "datasets", "faces", "face_images_100"),
		"-labels", testenv.Path(t, "datasets", "faces", "face_images_100.csv"), "-gallery", gallery)
	if b, err := enroll.CombinedOutput(); err != nil {
		t.Fatalf("enroll: %v\n%s", err, b)
	}
	classify := func(arch string, args ...string) (map[string]string, time.Duration) {
		t.Helper()
		cmd := exec.Command(native, append([]string{"classify", "-ort-lib", lib(arch), "-models", models}, args...)...)
		if arch == "arm64" {
			cmd = exec.Command(qemu, append([]string{arm, "classify", "-ort-lib", lib(arch), "-models", models}, args...)...)
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		start := time.Now()
		out, err := cmd.Output()
		took := time.Since(start)
		if err != nil {
			t.Fatalf("classify on %s: %v\n%s", arch, err, stderr.String())
		}
		labels := map[string]string{}
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			if stem, label, ok := strings.Cut(sc.Text(), ":"); ok {
				labels[stem] = label
			}
		}
		return labels, took
	}
	for _, set := range []struct {
		name  string
		files []string
		args  []string
		least int // photos whose label must agree
	}{
		{"imagenet-100", testenv.Images(t, "datasets", "imagenet-100", "images"), nil, 98},
		{"face_images_100", testenv.Images(t, "datasets", "faces", "face_images_100"), []string{"-gallery", gallery}, 100},
	} {
		want, nativeTook := classify("amd64", append(set.args, set.files...)...)
		got, armTook := classify("arm64", append(set.args, set.files...)...)
		same := 0
		for stem, label := range want {
			if got[stem] == label {
				same++
			} else {
				t.Logf("%s %s: amd64 %q, arm64 %q", set.name, stem, label, got[stem])
			}
		}
		t.Logf("%s: %d of %d photos labelled alike; amd64 natively %v, arm64 under qemu %v",
			set.name, same, len(set.files), nativeTook.Round(time.Millisecond), armTook.Round(time.Millisecond))
		if len(want) != len(set.files) || same < set.least {
			t.Errorf("%s: %d of %d labelled alike (of %d answers), want at least %d", set.name, same, len(set.files), len(want), set.least)
		}
	}
}
