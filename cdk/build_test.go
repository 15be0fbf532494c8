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

// A binary's asset hash changes with what the binary is built from, and
// with nothing else: not a test file, not another command, not a
// document (issue 20: editing a _test.go replaced the web instance).
func TestSourceHashCoversOnlyTheBuild(t *testing.T) {
	repo := t.TempDir()
	write := func(name, body string) {
		t.Helper()
		os.MkdirAll(filepath.Dir(filepath.Join(repo, name)), 0o755)
		if err := os.WriteFile(filepath.Join(repo, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", "module hashtest\n\ngo 1.22\n")
	write("lib/lib.go", "package lib\n\n// Answer is used by the app.\nconst Answer = 42\n")
	write("lib/lib_test.go", "package lib\n")
	write("lib/page.html", "<p>embedded</p>\n")
	write("lib/embed.go", "package lib\n\nimport _ \"embed\"\n\n//go:embed page.html\nvar Page string\n")
	write("app/main.go", "package main\n\nimport (\n\t\"fmt\"\n\n\t\"hashtest/lib\"\n)\n\nfunc main() { fmt.Println(lib.Answer, lib.Page) }\n")
	write("other/main.go", "package main\n\nfunc main() {}\n")
	write("README.md", "# hashtest\n")
	g := goBuild{repo: repo, pkg: "./app", binary: "app", goos: "linux", goarch: "amd64"}
	hash := func() string {
		t.Helper()
		h, err := sourceHash(g)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	first := hash()
	for _, edit := range []struct {
		file, body string
		changes    bool
	}{
		{"lib/lib_test.go", "package lib\n\n// edited\n", false},
		{"other/main.go", "package main\n\nfunc main() { println() }\n", false},
		{"README.md", "# edited\n", false},
		{"lib/lib.go", "package lib\n\n// Answer is used by the app, edited.\nconst Answer = 42\n", true},
		{"lib/page.html", "<p>edited</p>\n", true},
		{"app/main.go", "package main\n\nimport (\n\t\"fmt\"\n\n\t\"hashtest/lib\"\n)\n\nfunc main() { fmt.Println(lib.Page, lib.Answer) }\n", true},
	} {
		before := hash()
		write(edit.file, edit.body)
		if changed := hash() != before; changed != edit.changes {
			t.Errorf("editing %s: hash changed %v, want %v", edit.file, changed, edit.changes)
		}
	}
	arm := g
	arm.goarch = "arm64"
	if h, err := sourceHash(arm); err != nil || h == hash() {
		t.Errorf("another target, the same hash: %v", err)
	}
	if first == hash() {
		t.Error("the edits to the app's sources did not change its hash")
	}
}
