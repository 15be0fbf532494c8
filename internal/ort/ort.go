// Package ort runs ONNX models through the ONNX Runtime shared library
// (github.com/yalue/onnxruntime_go). It hides the binding's process-wide
// environment behind Load and exposes single-input, single-output float32
// sessions, which is what image models need.
package ort

import (
	"errors"
	"fmt"
	"slices"

	onnx "github.com/yalue/onnxruntime_go"
)

// Runtime is the loaded ONNX Runtime library.
type Runtime struct{}

// Load loads the ONNX Runtime shared library at lib. The binding keeps one
// environment per process, so a second Load reuses the first library; call
// it from one goroutine at start-up.
func Load(lib string) (*Runtime, error) {
	if !onnx.IsInitialized() {
		onnx.SetSharedLibraryPath(lib)
		if err := onnx.InitializeEnvironment(onnx.WithLogLevelError()); err != nil {
			return nil, fmt.Errorf("loading ONNX Runtime from %s: %w", lib, err)
		}
	}
	return &Runtime{}, nil
}

// Version is the library's version string, e.g. "1.22.0".
func (r *Runtime) Version() string { return onnx.GetVersion() }

// Tensor describes a model input or output.
type Tensor struct {
	Name  string
	Shape []int64 // -1 for dynamic dimensions such as the batch
}

// Session is a loaded model with one float32 input and one float32 output.
// Run may be called from several goroutines at once.
type Session struct {
	s      *onnx.DynamicAdvancedSession
	Input  Tensor
	Output Tensor
}

// NewSession loads the model file at path. threads is the intra-op thread
// count: one per concurrent Run keeps small machines from oversubscribing.
func (r *Runtime) NewSession(path string, threads int) (*Session, error) {
	opts, err := onnx.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("creating session options: %w", err)
	}
	defer opts.Destroy()
	if err := errors.Join(
		opts.SetIntraOpNumThreads(threads),
		opts.SetInterOpNumThreads(1),
		opts.SetExecutionMode(onnx.ExecutionModeSequential),
	); err != nil {
		return nil, fmt.Errorf("configuring session for %s: %w", path, err)
	}
	ins, outs, err := onnx.GetInputOutputInfoWithOptions(path, opts)
	if err != nil {
		return nil, fmt.Errorf("reading model %s: %w", path, err)
	}
	if len(ins) != 1 || len(outs) != 1 {
		return nil, fmt.Errorf("model %s has %d inputs and %d outputs, want 1 and 1", path, len(ins), len(outs))
	}
	for _, io := range []onnx.InputOutputInfo{ins[0], outs[0]} {
		if io.OrtValueType != onnx.ONNXTypeTensor || io.DataType != onnx.TensorElementDataTypeFloat {
			return nil, fmt.Errorf("model %s: %s is not a float32 tensor", path, io.Name)
		}
	}
	s, err := onnx.NewDynamicAdvancedSession(path, []string{ins[0].Name}, []string{outs[0].Name}, opts)
	if err != nil {
		return nil, fmt.Errorf("loading model %s: %w", path, err)
	}
	return &Session{
		s:      s,
		Input:  Tensor{Name: ins[0].Name, Shape: ins[0].Dimensions.Clone()},
		Output: Tensor{Name: outs[0].Name, Shape: outs[0].Dimensions.Clone()},
	}, nil
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
	if int64(len(input)) != inShape.FlattenedSize() {
		return nil, fmt.Errorf("input has %d floats, shape %v needs %d", len(input), inShape, inShape.FlattenedSize())
	}
	in, err := onnx.NewTensor(inShape, input)
	if err != nil {
		return nil, fmt.Errorf("creating input tensor: %w", err)
	}
	defer in.Destroy()
	out, err := onnx.NewEmptyTensor[float32](outShape)
	if err != nil {
		return nil, fmt.Errorf("creating output tensor: %w", err)
	}
	defer out.Destroy()
	if err := s.s.Run([]onnx.Value{in}, []onnx.Value{out}); err != nil {
		return nil, fmt.Errorf("running model: %w", err)
	}
	return out.GetData(), nil
}

// Close frees the session.
func (s *Session) Close() error { return s.s.Destroy() }

func withBatch(shape []int64, batch int) (onnx.Shape, error) {
	if len(shape) == 0 {
		return nil, errors.New("scalar tensors are not supported")
	}
	// A copy: NewShape keeps the slice it is given, and sessions run
	// concurrently.
	s := onnx.NewShape(slices.Clone(shape)...)
	s[0] = int64(batch)
	for _, d := range s[1:] {
		if d <= 0 {
			return nil, fmt.Errorf("dimension %v is not fixed", shape)
		}
	}
	return s, nil
}
