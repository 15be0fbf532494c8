package ort_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/surgeml/surge/internal/assets"
	"github.com/surgeml/surge/internal/ort"
	"github.com/surgeml/surge/internal/testenv"
)

func TestVersion(t *testing.T) {
	if v := testenv.Runtime(t).Version(); v != assets.RuntimeVersion {
		t.Errorf("Version() = %q, want %q", v, assets.RuntimeVersion)
	}
}

// ONNX Runtime keeps one environment per process: a second Load of the
// library shares the first's.
func TestLoadTwiceSharesTheEnvironment(t *testing.T) {
	lib := testenv.RuntimeLib(t)
	var envs []uintptr
	for range 2 {
		rt, err := ort.Load(lib)
		if err != nil {
			t.Fatal(err)
		}
		envs = append(envs, rt.Env())
	}
	if envs[0] == 0 || envs[0] != envs[1] {
		t.Errorf("environments %#x and %#x, want one", envs[0], envs[1])
	}
}

// A library that cannot be used is refused with a message that names it
// and says why, in the loader's words or ONNX Runtime's.
func TestLoadRefuses(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "libonnxruntime.so.1")
	if err := os.WriteFile(text, []byte(strings.Repeat("not a shared library\n", 10)), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing", "libonnxruntime.so.1")
	for _, c := range []struct {
		name, lib string
		want      []string
	}{
		{"missing", missing, []string{"loading ONNX Runtime from " + missing + ": ", "No such file or directory"}},
		{"not a library", text, []string{"loading ONNX Runtime from " + text + ": ", "invalid ELF header"}},
		// libm is found by its soname wherever glibc is.
		{"not ONNX Runtime", "libm.so.6", []string{"loading ONNX Runtime from libm.so.6: not ONNX Runtime: ", "undefined symbol: OrtGetApiBase"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ort.Load(c.lib)
			if err == nil {
				t.Fatal("loaded")
			}
			t.Log(err)
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

// A library without the C API Surge needs says its version and what
// Surge needs; asking the real one for an API from the future stands in
// for an old library.
func TestLoadRefusesMissingAPI(t *testing.T) {
	lib := testenv.RuntimeLib(t)
	_, err := ort.LoadAPI(lib, 999)
	want := fmt.Sprintf("ONNX Runtime %s at %s does not offer C API 999 (Surge needs ONNX Runtime 1.999 or later)", assets.RuntimeVersion, lib)
	if err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
}

func session(t testing.TB) *ort.Session {
	t.Helper()
	s, err := testenv.Runtime(t).NewSession(testenv.Model(t).Path, 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestSessionDescribesModel(t *testing.T) {
	s := session(t)
	for _, c := range []struct {
		got, want ort.Tensor
	}{
		{s.Input, ort.Tensor{Name: "input", Shape: []int64{-1, 3, 224, 224}}},
		{s.Output, ort.Tensor{Name: "output", Shape: []int64{-1, 1000}}},
	} {
		if c.got.Name != c.want.Name || !slices.Equal(c.got.Shape, c.want.Shape) {
			t.Errorf("got %+v, want %+v", c.got, c.want)
		}
	}
}

func TestNewSessionRefuses(t *testing.T) {
	rt := testenv.Runtime(t)
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	for _, c := range []struct {
		name, path string
		want       string
	}{
		{"missing", filepath.Join(dir, "missing.onnx"), "loading model " + filepath.Join(dir, "missing.onnx") + ": "},
		{"not a model", write("text.onnx", []byte("not a model")), "loading model " + filepath.Join(dir, "text.onnx") + ": "},
		{"two inputs", write("add.onnx", addModel()), "add.onnx: 2 inputs and 1 outputs, want 1 and 1"},
		{"int64 tensors", write("int64.onnx", unaryModel("Identity", int64Element, "n", "3")), "int64.onnx: input: x is not a float32 tensor"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := rt.NewSession(c.path, 1)
			if err == nil {
				s.Close()
				t.Fatal("loaded")
			}
			t.Log(err)
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not say %q", err, c.want)
			}
		})
	}
}

// Run refuses inputs that do not fit the model before ONNX Runtime sees
// them, and passes ONNX Runtime's own refusals on.
func TestRunRefuses(t *testing.T) {
	s := session(t)
	load := func(name string, model []byte) *ort.Session {
		path := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(path, model, 0o644); err != nil {
			t.Fatal(err)
		}
		s, err := testenv.Runtime(t).NewSession(path, 1)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	dynamic := load("dynamic.onnx", unaryModel("Identity", floatElement, "n", "width"))
	// Declared [n, 3], a transposition's output is [3, n]: the output Run
	// allocates from the declaration does not fit, which only ONNX Runtime
	// finds out.
	transpose := load("transpose.onnx", unaryModel("Transpose", floatElement, "n", "3"))
	for _, c := range []struct {
		name  string
		s     *ort.Session
		input []float32
		batch int
		want  string
	}{
		{"short input", s, make([]float32, 3*224*224-1), 1, "input has 150527 floats, shape [1 3 224 224] needs 150528"},
		{"batch larger than input", s, make([]float32, 3*224*224), 2, "input has 150528 floats, shape [2 3 224 224] needs 301056"},
		{"no batch", s, nil, 0, "input input: batch 0, want at least 1"},
		{"dynamic dimension", dynamic, make([]float32, 4), 1, "input x: dimension [-1 -1] is not fixed"},
		{"refused by ONNX Runtime", transpose, make([]float32, 3), 1, "running model: "},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := c.s.Run(c.input, c.batch)
			t.Log(err)
			if err == nil || !strings.HasPrefix(err.Error(), c.want) {
				t.Errorf("got %v, want %s", err, c.want)
			}
		})
	}
}

// inputs makes n distinct model inputs of batch b, the same every time.
func inputs(n, b int) [][]float32 {
	rng := rand.New(rand.NewPCG(1, 2))
	all := make([][]float32, n)
	for i := range all {
		all[i] = make([]float32, b*3*224*224)
		for j := range all[i] {
			all[i][j] = rng.Float32()*4 - 2
		}
	}
	return all
}

// Sessions are shared by a worker's inferences: Runs from several
// goroutines at once give each its own answer, bit for bit the one it gets
// alone, while the garbage collector runs.
func TestConcurrentRunsMatchSequential(t *testing.T) {
	s := session(t)
	type job struct {
		input []float32
		batch int
	}
	var jobs []job
	for _, b := range []int{1, 3} {
		for _, in := range inputs(4, b) {
			jobs = append(jobs, job{in, b})
		}
	}
	want := make([][]float32, len(jobs))
	for i, j := range jobs {
		out, err := s.Run(j.input, j.batch)
		if err != nil {
			t.Fatal(err)
		}
		if len(out) != j.batch*1000 {
			t.Fatalf("job %d: %d outputs, want %d", i, len(out), j.batch*1000)
		}
		for k := range i {
			if slices.Equal(out, want[k]) {
				t.Fatalf("jobs %d and %d give the same output: a mix-up could not be seen", k, i)
			}
		}
		want[i] = out
	}

	const goroutines, rounds = 4, 3
	stop := make(chan struct{})
	var gc sync.WaitGroup
	gc.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				runtime.GC()
			}
		}
	})
	var wg sync.WaitGroup
	errs := make(chan error, goroutines*rounds*len(jobs))
	for g := range goroutines {
		wg.Go(func() {
			for r := range rounds {
				for n := range jobs {
					i := (n + g + r) % len(jobs) // each goroutine in its own order
					// A copy, so that no two Runs read the same memory and
					// the original stays to compare with.
					got, err := s.Run(slices.Clone(jobs[i].input), jobs[i].batch)
					if err != nil {
						errs <- err
					} else if !slices.Equal(got, want[i]) {
						errs <- fmt.Errorf("goroutine %d, job %d: output differs from the sequential run", g, i)
					}
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	gc.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// The binding needs no C compiler: internal/ort builds without cgo, with
// a C compiler that always fails, for both CPUs Surge deploys to.
func TestBuildsWithoutCgo(t *testing.T) {
	testenv.SkipShort(t, "the go command")
	for _, arch := range []string{"amd64", "arm64"} {
		t.Run(arch, func(t *testing.T) {
			cmd := exec.Command("go", "build", ".")
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "CC=false", "GOOS=linux", "GOARCH="+arch)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%v: %v\n%s", cmd.Args, err, out)
			}
		})
	}
}
