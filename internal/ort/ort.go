// Package ort runs ONNX models through the ONNX Runtime shared library,
// loaded at run time without cgo: the few C API functions Surge calls are
// bound here through github.com/ebitengine/purego (capi.go). It exposes
// single-input, single-output float32 sessions, which is what image models
// need.
package ort

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strings"
	"unsafe"

	"github.com/ebitengine/purego"

	"github.com/surgeml/surge/internal/assets"
)

// Runtime is the loaded ONNX Runtime library and its environment.
type Runtime struct {
	api     api
	version string
	// ONNX Runtime's own objects, kept for the life of the process: the
	// environment every session belongs to, the allocator that ONNX
	// Runtime hands out names with, and the description of CPU memory
	// that tensors over Go memory need.
	env, allocator, memoryInfo uintptr
}

// Load loads the ONNX Runtime shared library at lib, which must offer the
// C API Surge is written against (assets.RuntimeAPIVersion). Loading the
// same library again is cheap and shares the first load's environment:
// the dynamic loader hands out the library already loaded, and ONNX
// Runtime keeps one environment per process, counting its users.
func Load(lib string) (*Runtime, error) {
	return load(lib, assets.RuntimeAPIVersion)
}

// load is Load asking for C API apiVersion, so that tests can ask for one
// the library lacks.
//
// A library refused after it was opened stays loaded: unloading a C++
// library that the process may load again is a risk not worth the memory
// of a process that is about to report the error.
func load(lib string, apiVersion uint32) (*Runtime, error) {
	h, err := purego.Dlopen(lib, purego.RTLD_NOW|purego.RTLD_LOCAL)
	if err != nil {
		// dlerror's text usually starts with the path; say it once.
		return nil, fmt.Errorf("loading ONNX Runtime from %s: %s", lib, strings.TrimPrefix(err.Error(), lib+": "))
	}
	sym, err := purego.Dlsym(h, "OrtGetApiBase")
	if err != nil {
		return nil, fmt.Errorf("loading ONNX Runtime from %s: not ONNX Runtime: %w", lib, err)
	}
	var getAPIBase func() unsafe.Pointer
	purego.RegisterFunc(&getAPIBase, sym)
	base := getAPIBase()
	// struct OrtApiBase is two function pointers: GetApi, then
	// GetVersionString. Both exist in every release, whatever its API.
	var (
		getAPI           func(version uint32) unsafe.Pointer
		getVersionString func() string
	)
	purego.RegisterFunc(&getAPI, *(*uintptr)(base))
	purego.RegisterFunc(&getVersionString, *(*uintptr)(unsafe.Add(base, pointerSize)))
	r := &Runtime{version: getVersionString()}
	table := getAPI(apiVersion)
	if table == nil {
		// Release 1.N is the first to offer C API N.
		return nil, fmt.Errorf("ONNX Runtime %s at %s does not offer C API %d (Surge needs ONNX Runtime 1.%d or later)",
			r.version, lib, apiVersion, apiVersion)
	}
	if err := r.api.bind(table); err != nil {
		return nil, fmt.Errorf("ONNX Runtime %s at %s: %w", r.version, lib, err)
	}
	logID := []byte("surge\x00")
	if err := r.api.check(r.api.createEnv(loggingLevelError, &logID[0], &r.env)); err != nil {
		return nil, fmt.Errorf("creating the environment of ONNX Runtime %s at %s: %w", r.version, lib, err)
	}
	if err := r.api.check(r.api.getAllocatorWithDefaultOptions(&r.allocator)); err != nil {
		return nil, fmt.Errorf("getting ONNX Runtime's allocator: %w", err)
	}
	if err := r.api.check(r.api.createCpuMemoryInfo(arenaAllocator, memTypeDefault, &r.memoryInfo)); err != nil {
		return nil, fmt.Errorf("describing CPU memory to ONNX Runtime: %w", err)
	}
	return r, nil
}

// Version is the library's version string, e.g. "1.22.0".
func (r *Runtime) Version() string { return r.version }

// Tensor describes a model input or output.
type Tensor struct {
	Name  string
	Shape []int64 // -1 for dynamic dimensions such as the batch
}

// Session is a loaded model with one float32 input and one float32 output.
// Run may be called from several goroutines at once.
type Session struct {
	rt      *Runtime
	session uintptr
	Input   Tensor
	Output  Tensor
	// Run's name arguments are arrays of C strings: these are the arrays,
	// one NUL-terminated name each, kept as long as the session so that
	// Run builds nothing to name its tensors.
	inputNames, outputNames [1]*byte
}

// NewSession loads the model file at path. threads is the intra-op thread
// count: one per concurrent Run keeps small machines from oversubscribing.
func (r *Runtime) NewSession(path string, threads int) (*Session, error) {
	if threads < 0 || threads > math.MaxInt32 {
		return nil, fmt.Errorf("loading model %s: %d intra-op threads is out of range", path, threads)
	}
	cPath, err := cString(path)
	if err != nil {
		return nil, fmt.Errorf("loading model %s: %w", path, err)
	}
	a := &r.api
	var opts uintptr
	if err := a.check(a.createSessionOptions(&opts)); err != nil {
		return nil, fmt.Errorf("creating session options: %w", err)
	}
	defer a.releaseSessionOptions(opts)
	if err := errors.Join(
		a.check(a.setIntraOpNumThreads(opts, int32(threads))),
		a.check(a.setInterOpNumThreads(opts, 1)),
		a.check(a.setSessionExecutionMode(opts, executionSequence)),
		a.check(a.setSessionLogSeverityLevel(opts, loggingLevelError)),
	); err != nil {
		return nil, fmt.Errorf("configuring session for %s: %w", path, err)
	}
	s := &Session{rt: r}
	if err := a.check(a.createSession(r.env, &cPath[0], opts, &s.session)); err != nil {
		return nil, fmt.Errorf("loading model %s: %w", path, err)
	}
	if err := s.describe(); err != nil {
		a.releaseSession(s.session)
		return nil, fmt.Errorf("model %s: %w", path, err)
	}
	return s, nil
}

// describe reads the session's input and output.
func (s *Session) describe() error {
	a := &s.rt.api
	var ins, outs uintptr
	if err := errors.Join(
		a.check(a.sessionGetInputCount(s.session, &ins)),
		a.check(a.sessionGetOutputCount(s.session, &outs)),
	); err != nil {
		return fmt.Errorf("counting inputs and outputs: %w", err)
	}
	if ins != 1 || outs != 1 {
		return fmt.Errorf("%d inputs and %d outputs, want 1 and 1", ins, outs)
	}
	var err error
	if s.Input, err = s.tensor(a.sessionGetInputName, a.sessionGetInputTypeInfo); err != nil {
		return fmt.Errorf("input: %w", err)
	}
	if s.Output, err = s.tensor(a.sessionGetOutputName, a.sessionGetOutputTypeInfo); err != nil {
		return fmt.Errorf("output: %w", err)
	}
	for _, n := range []struct {
		name  string
		array *[1]*byte
	}{{s.Input.Name, &s.inputNames}, {s.Output.Name, &s.outputNames}} {
		c, err := cString(n.name)
		if err != nil {
			return fmt.Errorf("tensor name: %w", err)
		}
		n.array[0] = &c[0]
	}
	return nil
}

// tensor describes the session's first input or output, given the
// functions that read an input's or an output's name and type.
func (s *Session) tensor(
	getName func(session, index, allocator uintptr, name **byte) uintptr,
	getTypeInfo func(session, index uintptr, info *uintptr) uintptr,
) (Tensor, error) {
	a := &s.rt.api
	var name *byte
	if err := a.check(getName(s.session, 0, s.rt.allocator, &name)); err != nil {
		return Tensor{}, fmt.Errorf("reading its name: %w", err)
	}
	t := Tensor{Name: goString(name)}
	if err := a.check(a.allocatorFree(s.rt.allocator, name)); err != nil {
		return Tensor{}, fmt.Errorf("freeing the name of %s: %w", t.Name, err)
	}
	var info uintptr
	if err := a.check(getTypeInfo(s.session, 0, &info)); err != nil {
		return Tensor{}, fmt.Errorf("reading the type of %s: %w", t.Name, err)
	}
	defer a.releaseTypeInfo(info)
	var onnxType int32
	if err := a.check(a.getOnnxTypeFromTypeInfo(info, &onnxType)); err != nil {
		return Tensor{}, fmt.Errorf("reading the type of %s: %w", t.Name, err)
	}
	if onnxType != onnxTypeTensor {
		return Tensor{}, fmt.Errorf("%s is not a float32 tensor", t.Name)
	}
	// The tensor information belongs to info: released with it.
	var tensorInfo uintptr
	var elementType int32
	var dims uintptr
	if err := errors.Join(
		a.check(a.castTypeInfoToTensorInfo(info, &tensorInfo)),
		a.check(a.getTensorElementType(tensorInfo, &elementType)),
		a.check(a.getDimensionsCount(tensorInfo, &dims)),
	); err != nil {
		return Tensor{}, fmt.Errorf("reading the type of %s: %w", t.Name, err)
	}
	if elementType != elementFloat {
		return Tensor{}, fmt.Errorf("%s is not a float32 tensor", t.Name)
	}
	t.Shape = make([]int64, dims)
	if dims > 0 {
		if err := a.check(a.getDimensions(tensorInfo, &t.Shape[0], dims)); err != nil {
			return Tensor{}, fmt.Errorf("reading the shape of %s: %w", t.Name, err)
		}
	}
	return t, nil
}

// Run feeds a batch of inputs laid out back to back and returns the
// outputs the same way. Every dimension but the first must be fixed.
func (s *Session) Run(input []float32, batch int) ([]float32, error) {
	inShape, err := withBatch(s.Input.Shape, batch)
	if err != nil {
		return nil, fmt.Errorf("input %s: %w", s.Input.Name, err)
	}
	outShape, err := withBatch(s.Output.Shape, batch)
	if err != nil {
		return nil, fmt.Errorf("output %s: %w", s.Output.Name, err)
	}
	if n := elements(inShape); int64(len(input)) != n {
		return nil, fmt.Errorf("input has %d floats, shape %v needs %d", len(input), inShape, n)
	}
	output := make([]float32, elements(outShape))
	// The tensors are views of input and output: both must outlive them.
	// The garbage collector never moves heap memory, but would free input
	// once nothing in Go refers to it.
	defer runtime.KeepAlive(input)
	a := &s.rt.api
	in, err := s.rt.tensorOver(input, inShape)
	if err != nil {
		return nil, fmt.Errorf("creating input tensor: %w", err)
	}
	defer a.releaseValue(in)
	out, err := s.rt.tensorOver(output, outShape)
	if err != nil {
		return nil, fmt.Errorf("creating output tensor: %w", err)
	}
	defer a.releaseValue(out)
	// With the output given, ONNX Runtime writes into it rather than
	// allocating one. A session's Run is safe to call concurrently.
	if err := a.check(a.run(s.session, 0, &s.inputNames[0], &in, 1, &s.outputNames[0], 1, &out)); err != nil {
		return nil, fmt.Errorf("running model: %w", err)
	}
	return output, nil
}

// tensorOver makes an ONNX Runtime tensor of the given shape whose
// elements are data's, not a copy; the caller releases it, and keeps data
// alive until then.
func (r *Runtime) tensorOver(data []float32, shape []int64) (uintptr, error) {
	var v uintptr
	err := r.api.check(r.api.createTensorWithDataAsOrtValue(r.memoryInfo,
		unsafe.Pointer(unsafe.SliceData(data)), uintptr(len(data))*bytesPerFloat,
		&shape[0], uintptr(len(shape)), elementFloat, &v))
	return v, err
}

// Close frees the session. It must not run alongside Run.
func (s *Session) Close() error {
	if s.session != 0 {
		s.rt.api.releaseSession(s.session)
		s.session = 0
	}
	return nil
}

// withBatch is shape with its first dimension set to batch; every other
// dimension must be fixed.
func withBatch(shape []int64, batch int) ([]int64, error) {
	if len(shape) == 0 {
		return nil, errors.New("scalar tensors are not supported")
	}
	if batch < 1 {
		return nil, fmt.Errorf("batch %d, want at least 1", batch)
	}
	// A copy: sessions run concurrently.
	s := slices.Clone(shape)
	s[0] = int64(batch)
	for _, d := range s[1:] {
		if d <= 0 {
			return nil, fmt.Errorf("dimension %v is not fixed", shape)
		}
	}
	return s, nil
}

// elements is the number of elements of a tensor of the given shape.
func elements(shape []int64) int64 {
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	return n
}
