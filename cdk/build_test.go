package main

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/surgeml/surge/internal/testenv"
)

// Every binary the stack deploys builds for both instance architectures
// with the deployment's own build step, with no C compiler (CC names a
// command that always fails) and cgo off, and passes the glibc check; the
// CDK app itself builds for a Mac on Arm and for Windows, the hosts users
// deploy from.
func TestBuildsOnAnyHostForEitherArchitecture(t *testing.T) {
	testenv.SkipShort(t, "cross-compiling every deployed binary")
	repo := testenv.Root(t)
	t.Setenv("CC", "false")
	t.Setenv("CXX", "false")
	out := t.TempDir()
	for _, arch := range []string{"amd64", "arm64"} {
		for _, g := range []goBuild{
			{pkg: "./worker", binary: "worker"},
			{pkg: "./webtier", binary: "webtier"},
			{pkg: "./lambdas/scaler", binary: "bootstrap", tags: "lambda.norpc"},
			{pkg: "./lambdas/stackhooks", binary: "bootstrap", tags: "lambda.norpc"},
		} {
			g.repo, g.goos, g.goarch = repo, "linux", arch
			bin := filepath.Join(out, arch, strings.TrimPrefix(g.pkg, "./"), g.binary)
			if err := g.build(bin); err != nil {
				t.Errorf("%s for linux/%s: %v", g.pkg, arch, err)
				continue
			}
			f, err := elf.Open(bin)
			if err != nil {
				t.Fatal(err)
			}
			if want := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[arch]; f.Machine != want {
				t.Errorf("%s for linux/%s is a %v binary", g.pkg, arch, f.Machine)
			}
			f.Close()
		}
	}
	// Built without cgo, the web tier still runs on AWS's backends; asked
	// for the embedded ones, it says what it lacks rather than SQLite's stub
	// message.
	if runtime.GOOS == "linux" && runtime.GOARCH == "amd64" {
		cmd := exec.Command(filepath.Join(out, "amd64", "webtier", "webtier"), "-backend", "local", "-data", t.TempDir(), "-host", "127.0.0.1", "-port", "0")
		b, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(b), "built without it") || !strings.Contains(string(b), "install gcc") {
			t.Errorf("the web tier built without cgo, on the embedded backends: %v, want a failure naming gcc\n%s", err, b)
		}
	}
	for _, target := range [][2]string{{"darwin", "arm64"}, {"windows", "amd64"}} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(out, "cdk-"+target[0]), "./cdk")
		cmd.Dir = repo
		cmd.Env = append(os.Environ(), "GOOS="+target[0], "GOARCH="+target[1], "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("the CDK app for %s/%s: %v\n%s", target[0], target[1], err, b)
		}
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
