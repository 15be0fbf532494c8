package main

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/aws/jsii-runtime-go"
)

// The cgo bundling step refuses a binary that needs a newer glibc than
// Amazon Linux 2023's, and keeps one that does not.
func TestBundleChecksGlibc(t *testing.T) {
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skip("cgo bundles are built on linux/amd64")
	}
	for _, tc := range []struct {
		name string
		call string // C expression main prints
		ok   bool
	}{
		{"arc4random", "arc4random()", false}, // GLIBC_2.36 on this Debian 12 build host
		{"rand", "(unsigned)rand()", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			repo := t.TempDir()
			os.WriteFile(filepath.Join(repo, "go.mod"), []byte("module bundletest\n\ngo 1.22\n"), 0o644)
			os.WriteFile(filepath.Join(repo, "main.go"), []byte(`package main

// #include <stdlib.h>
// static unsigned value(void) { return `+tc.call+`; }
import "C"

import "fmt"

func main() { fmt.Println(C.value()) }
`), 0o644)
			out := t.TempDir()
			g := goBuild{repo: repo, pkg: ".", binary: "app", goos: "linux", goarch: "amd64", cgo: true}
			if got := *g.TryBundle(jsii.String(out), nil); got != tc.ok {
				t.Fatalf("TryBundle = %v, want %v", got, tc.ok)
			}
			if _, err := os.Stat(filepath.Join(out, "app")); err != nil {
				t.Fatalf("the build itself failed: %v", err)
			}
		})
	}
}
