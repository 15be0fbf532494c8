// Package testenv holds what tests share: the contract suites every queue,
// bucket and results table backend runs (queuetest.go, blobtest.go,
// resultstest.go), images no encoder here writes (testimage.go), and what
// the tests need outside the repository: the
// shared datasets and model (../shared, or $SURGE_SHARED) and the ONNX
// Runtime library (resolved as the product resolves it). A missing piece
// fails the test with instructions.
//
// The fast tier (go test -short) has none of those pieces: the helpers
// that hand them out (Shared and what reads it, RuntimeLib, Runtime,
// Model, BuildBinaries, Built, Synth) skip the test instead, saying what it
// needs, and MainWithBinaries builds nothing. Where a test needs a slow
// part only incidentally, the fast tier's fakes stand in for it
// (fake.go).
package testenv

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/surgeml/surge/internal/assets"
	"github.com/surgeml/surge/internal/deploy"
	"github.com/surgeml/surge/internal/ort"
	"github.com/surgeml/surge/internal/workload"
)

// Root is the repository root (the directory holding go.mod).
func Root(t testing.TB) string {
	t.Helper()
	dir, err := root()
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func root() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the test's directory")
		}
		dir = parent
	}
}

// SkipShort skips the test in the fast tier (-short), which lacks what it
// needs ("moto_server", "node").
func SkipShort(t testing.TB, needs string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("needs %s; run make test", needs)
	}
}

// short is testing.Short for a TestMain, where m.Run has not parsed the
// flags yet.
func short() bool {
	if !flag.Parsed() {
		flag.Parse()
	}
	return testing.Short()
}

// Shared is the read-only shared directory with models and datasets.
func Shared(t testing.TB) string {
	t.Helper()
	SkipShort(t, "../shared (models and datasets)")
	dir := os.Getenv("SURGE_SHARED")
	if dir == "" {
		dir = filepath.Join(Root(t), "..", "shared")
	}
	if _, err := os.Stat(filepath.Join(dir, "models")); err != nil {
		t.Fatalf("shared data not found at %s (set SURGE_SHARED): %v", dir, err)
	}
	return dir
}

// Path joins elements onto the shared directory.
func Path(t testing.TB, elem ...string) string {
	return filepath.Join(append([]string{Shared(t)}, elem...)...)
}

// Cache is where `make ort` puts downloads: $SURGE_CACHE or .cache in the
// repository.
func Cache(t testing.TB) string {
	if dir := os.Getenv("SURGE_CACHE"); dir != "" {
		return dir
	}
	return filepath.Join(Root(t), ".cache")
}

// RuntimeLib resolves the ONNX Runtime library without downloading.
func RuntimeLib(t testing.TB) string {
	t.Helper()
	SkipShort(t, "the ONNX Runtime library")
	src, err := assets.RuntimeSource()
	if err != nil {
		t.Fatal(err)
	}
	src.Path = os.Getenv("SURGE_ORT_LIB")
	src.Cache = Cache(t)
	src.URL = "" // tests never reach beyond loopback
	lib, err := assets.Resolve(context.Background(), src)
	if err != nil {
		t.Fatalf("%v\nrun `make ort` (or set SURGE_ORT_LIB) first", err)
	}
	return lib
}

// RuntimeLibFor resolves, without downloading, the ONNX Runtime library
// for linux/arch instances (`make ort` fetches both).
func RuntimeLibFor(t testing.TB, arch string) string {
	t.Helper()
	SkipShort(t, "the ONNX Runtime library")
	src, err := assets.RuntimeSourceFor(arch)
	if err != nil {
		t.Fatal(err)
	}
	src.Cache, src.URL = Cache(t), ""
	lib, err := assets.Resolve(context.Background(), src)
	if err != nil {
		t.Fatalf("%v\nrun `make ort` first", err)
	}
	return lib
}

// CDKCLI is the pinned AWS CDK CLI's bin/cdk, from the cache, without
// downloading (`make cdk-cli` puts it there).
func CDKCLI(t testing.TB) string {
	t.Helper()
	SkipShort(t, "the AWS CDK CLI (node)")
	bin, err := deploy.ResolveCLI(context.Background(), Cache(t), false, nil)
	if err != nil {
		t.Fatalf("%v\nrun `make cdk-cli` first", err)
	}
	return bin
}

// Runtime loads ONNX Runtime (once per process; later calls reuse it).
func Runtime(t testing.TB) *ort.Runtime {
	t.Helper()
	rt, err := ort.Load(RuntimeLib(t))
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

// Model resolves the default model from the shared models directory.
func Model(t testing.TB) assets.Model {
	t.Helper()
	SkipShort(t, "the model")
	m, err := assets.ResolveModel(context.Background(), assets.ModelConfig{
		Mirrors: []string{Path(t, "models")},
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// BuildBinaries compiles the repository's commands (./worker...) into a
// temporary directory, removed when the test ends, and returns it.
func BuildBinaries(t testing.TB, pkgs ...string) string {
	t.Helper()
	SkipShort(t, "the built commands")
	dir, err := build(pkgs...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// build compiles the repository's commands into a new temporary
// directory and returns it; the caller removes it.
func build(pkgs ...string) (string, error) {
	root, err := root()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "surge-bin-")
	if err != nil {
		return "", err
	}
	cmd := exec.Command("go", append([]string{"build", "-o", dir + "/"}, pkgs...)...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("go build %v: %v\n%s", pkgs, err, out)
	}
	return dir, nil
}

// Darknet reads one of the shared darknet photos (dog.jpg, eagle.jpg...).
func Darknet(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(Path(t, "images", "darknet", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// MainWithBinaries is a TestMain for end-to-end tests: it builds the
// surge, webtier and worker commands into *bin, runs the tests and removes
// them. Under -short it builds nothing and leaves *bin empty; the tests
// reach it through Built, which skips them.
func MainWithBinaries(m *testing.M, bin *string) {
	if short() {
		os.Exit(m.Run())
	}
	dir, err := build("./cmd/surge", "./webtier", "./worker")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	*bin = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// Built is bin, the directory MainWithBinaries built the commands into.
// Under -short nothing was built, and the test skips.
func Built(t testing.TB, bin string) string {
	t.Helper()
	SkipShort(t, "the built commands")
	if bin == "" {
		t.Fatal("no commands built: the test binary's TestMain must be testenv.MainWithBinaries")
	}
	return bin
}

// EnrollFaces runs `surge enroll` from bin on the 100-face set and
// returns the gallery file.
func EnrollFaces(t testing.TB, bin string) string {
	t.Helper()
	bin = Built(t, bin)
	gallery := filepath.Join(t.TempDir(), "faces.gallery")
	enroll := exec.Command(filepath.Join(bin, "surge"), "enroll",
		"-ort-lib", RuntimeLib(t), "-models", Path(t, "models"),
		"-images", Path(t, "datasets", "faces", "face_images_100"),
		"-labels", Path(t, "datasets", "faces", "face_images_100.csv"),
		"-gallery", gallery)
	if out, err := enroll.CombinedOutput(); err != nil {
		t.Fatalf("enroll: %v\n%s", err, out)
	}
	return gallery
}

// Images lists the images in a shared dataset folder, sorted.
func Images(t testing.TB, elem ...string) []string {
	t.Helper()
	files, err := workload.ImagesIn(Path(t, elem...))
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// Labels reads a shared Image,Results CSV.
func Labels(t testing.TB, elem ...string) map[string]string {
	t.Helper()
	labels, err := workload.ReadLabels(Path(t, elem...))
	if err != nil {
		t.Fatal(err)
	}
	return labels
}

// Workload sends files to the web tier at url as the generator does, 100
// at once, and fails the test with the generator's report unless every
// request was answered, and answered as expected where expected says.
func Workload(t testing.TB, url string, files []string, expected map[string]string) workload.Report {
	t.Helper()
	rep, err := workload.Run(context.Background(), workload.Config{URL: url + "/", Files: files, Expected: expected, Concurrency: 100, Timeout: 2 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		var b strings.Builder
		rep.Print(&b, expected)
		t.Fatalf("workload failed:\n%s", b.String())
	}
	t.Logf("%d requests in %v: %.1f req/s, p50 %v, p99 %v", rep.Requests, rep.Duration.Round(time.Millisecond), rep.Throughput(), rep.P50.Round(time.Millisecond), rep.P99.Round(time.Millisecond))
	return rep
}

// Synth synthesizes the CDK app into a new temporary directory with the
// given context (-c key=value; the shared model and the cached ONNX
// Runtime unless given), as `make synth` does, and returns the cloud
// assembly's directory; it is removed when the test ends.
func Synth(t testing.TB, context map[string]string) string {
	t.Helper()
	return SynthIn(t, Root(t), context)
}

// SynthIn is Synth of the CDK app of the repository at root (a copy of
// Root, say, with files edited).
func SynthIn(t testing.TB, root string, context map[string]string) string {
	t.Helper()
	SkipShort(t, "the CDK's jsii runtime (node)")
	if _, ok := context["modelDir"]; !ok {
		context["modelDir"] = Path(t, "models", "mobilenetv2-12-int8")
	}
	if _, ok := context["ortLib"]; !ok {
		context["ortLib"] = RuntimeLibFor(t, deploy.InstanceArch(cmp.Or(context["workerInstanceType"], "c7i.large")))
	}
	out := t.TempDir()
	args := []string{"run", "./cdk"}
	for _, k := range slices.Sorted(maps.Keys(context)) {
		args = append(args, "-c", k+"="+context[k])
	}
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CDK_OUTDIR="+out, "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=20")
	start := time.Now()
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("synth %v: %v\n%s", args, err, b)
	}
	t.Logf("synthesized %v in %v", context, time.Since(start).Round(time.Second))
	return out
}

// CopyRepo copies the repository's sources (not its caches, builds or
// history) into a new temporary directory, for a test that edits them.
func CopyRepo(t testing.TB) string {
	t.Helper()
	src, dst := Root(t), t.TempDir()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if d.IsDir() {
			if path != src && (strings.HasPrefix(d.Name(), ".") || slices.Contains([]string{"bin", "cdk.out", "node_modules"}, d.Name())) {
				return filepath.SkipDir
			}
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, info.Mode().Perm())
	})
	if err != nil {
		t.Fatalf("copying the repository: %v", err)
	}
	return dst
}

// FreePort is a TCP port on loopback that nothing listens on right now.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// DumpLogs logs the tail of every *.log file in and below dir, for a
// failed test.
func DumpLogs(t testing.TB, dir string) {
	var logs []string
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(path, ".log") {
			logs = append(logs, path)
		}
		return nil
	})
	for _, l := range logs {
		b, _ := os.ReadFile(l)
		if len(b) > 3000 {
			b = b[len(b)-3000:]
		}
		rel, _ := filepath.Rel(dir, l)
		t.Logf("--- %s\n%s", rel, b)
	}
}

// Logger is a JSON logger into dir/name, closed when the test ends, so
// that DumpLogs shows it when the test fails.
func Logger(t testing.TB, dir, name string) *slog.Logger {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return slog.New(slog.NewJSONHandler(f, nil))
}

// SizesModel is the command of the reference model process,
// testdata/models/sizes.py, under python3 (skipped without it: the fast
// tier needs no Python).
func SizesModel(t testing.TB) []string {
	t.Helper()
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is not installed")
	}
	return []string{python, filepath.Join(Root(t), "testdata", "models", "sizes.py")}
}
