package ort

import (
	"errors"
	"fmt"
	"strings"
	"unsafe"

	"github.com/ebitengine/purego"
)

// Values of the C API's enums that Surge passes or checks
// (onnxruntime_c_api.h).
const (
	loggingLevelError = 3 // OrtLoggingLevel ORT_LOGGING_LEVEL_ERROR
	executionSequence = 0 // ExecutionMode ORT_SEQUENTIAL
	onnxTypeTensor    = 1 // ONNXType ONNX_TYPE_TENSOR
	elementFloat      = 1 // ONNXTensorElementDataType ..._FLOAT
	arenaAllocator    = 1 // OrtAllocatorType OrtArenaAllocator
	memTypeDefault    = 0 // OrtMemType OrtMemTypeDefault
	bytesPerFloat     = 4
	pointerSize       = unsafe.Sizeof(uintptr(0))
	statusOK          = 0 // a NULL OrtStatus* is success
)

// api holds the functions of the C API's OrtApi table that Surge calls.
//
// Handles (OrtEnv*, OrtSession*, OrtValue*, OrtStatus*, ...) are uintptr:
// Go never looks inside them, and the garbage collector must not either.
// Go memory that ONNX Runtime reads or writes during a call is passed as a
// Go pointer, so that purego keeps it alive for the call; size_t is
// uintptr, int and C enums are int32.
type api struct {
	getErrorMessage func(status uintptr) string

	createEnv     func(level int32, logID *byte, env *uintptr) uintptr
	createSession func(env uintptr, path *byte, options uintptr, session *uintptr) uintptr
	run           func(session, runOptions uintptr, inputNames **byte, inputs *uintptr, inputLen uintptr, outputNames **byte, outputLen uintptr, outputs *uintptr) uintptr

	createSessionOptions       func(options *uintptr) uintptr
	setSessionExecutionMode    func(options uintptr, mode int32) uintptr
	setSessionLogSeverityLevel func(options uintptr, level int32) uintptr
	setIntraOpNumThreads       func(options uintptr, threads int32) uintptr
	setInterOpNumThreads       func(options uintptr, threads int32) uintptr

	sessionGetInputCount     func(session uintptr, count *uintptr) uintptr
	sessionGetOutputCount    func(session uintptr, count *uintptr) uintptr
	sessionGetInputTypeInfo  func(session, index uintptr, info *uintptr) uintptr
	sessionGetOutputTypeInfo func(session, index uintptr, info *uintptr) uintptr
	sessionGetInputName      func(session, index, allocator uintptr, name **byte) uintptr
	sessionGetOutputName     func(session, index, allocator uintptr, name **byte) uintptr

	createTensorWithDataAsOrtValue func(memoryInfo uintptr, data unsafe.Pointer, dataLen uintptr, shape *int64, shapeLen uintptr, elementType int32, value *uintptr) uintptr

	castTypeInfoToTensorInfo func(typeInfo uintptr, tensorInfo *uintptr) uintptr
	getOnnxTypeFromTypeInfo  func(typeInfo uintptr, onnxType *int32) uintptr
	getTensorElementType     func(tensorInfo uintptr, elementType *int32) uintptr
	getDimensionsCount       func(tensorInfo uintptr, count *uintptr) uintptr
	getDimensions            func(tensorInfo uintptr, dims *int64, count uintptr) uintptr

	createCpuMemoryInfo            func(allocatorType, memType int32, info *uintptr) uintptr
	allocatorFree                  func(allocator uintptr, p *byte) uintptr
	getAllocatorWithDefaultOptions func(allocator *uintptr) uintptr

	releaseStatus         func(status uintptr)
	releaseSession        func(session uintptr)
	releaseValue          func(value uintptr)
	releaseTypeInfo       func(typeInfo uintptr)
	releaseSessionOptions func(options uintptr)
}

// bind fills a from the OrtApi table at table. The indices are the
// positions of the functions in struct OrtApi, which ONNX Runtime only ever
// appends to, so they hold for every API version from the one that added
// each function on.
func (a *api) bind(table unsafe.Pointer) error {
	for _, f := range []struct {
		index int
		name  string
		fn    any
	}{
		{2, "GetErrorMessage", &a.getErrorMessage},
		{3, "CreateEnv", &a.createEnv},
		{7, "CreateSession", &a.createSession},
		{9, "Run", &a.run},
		{10, "CreateSessionOptions", &a.createSessionOptions},
		{13, "SetSessionExecutionMode", &a.setSessionExecutionMode},
		{22, "SetSessionLogSeverityLevel", &a.setSessionLogSeverityLevel},
		{24, "SetIntraOpNumThreads", &a.setIntraOpNumThreads},
		{25, "SetInterOpNumThreads", &a.setInterOpNumThreads},
		{30, "SessionGetInputCount", &a.sessionGetInputCount},
		{31, "SessionGetOutputCount", &a.sessionGetOutputCount},
		{33, "SessionGetInputTypeInfo", &a.sessionGetInputTypeInfo},
		{34, "SessionGetOutputTypeInfo", &a.sessionGetOutputTypeInfo},
		{36, "SessionGetInputName", &a.sessionGetInputName},
		{37, "SessionGetOutputName", &a.sessionGetOutputName},
		{49, "CreateTensorWithDataAsOrtValue", &a.createTensorWithDataAsOrtValue},
		{55, "CastTypeInfoToTensorInfo", &a.castTypeInfoToTensorInfo},
		{56, "GetOnnxTypeFromTypeInfo", &a.getOnnxTypeFromTypeInfo},
		{60, "GetTensorElementType", &a.getTensorElementType},
		{61, "GetDimensionsCount", &a.getDimensionsCount},
		{62, "GetDimensions", &a.getDimensions},
		{69, "CreateCpuMemoryInfo", &a.createCpuMemoryInfo},
		{76, "AllocatorFree", &a.allocatorFree},
		{78, "GetAllocatorWithDefaultOptions", &a.getAllocatorWithDefaultOptions},
		{93, "ReleaseStatus", &a.releaseStatus},
		{95, "ReleaseSession", &a.releaseSession},
		{96, "ReleaseValue", &a.releaseValue},
		{98, "ReleaseTypeInfo", &a.releaseTypeInfo},
		{100, "ReleaseSessionOptions", &a.releaseSessionOptions},
	} {
		p := *(*uintptr)(unsafe.Add(table, uintptr(f.index)*pointerSize))
		if p == 0 {
			return fmt.Errorf("the C API has no %s", f.name)
		}
		purego.RegisterFunc(f.fn, p)
	}
	return nil
}

// check turns the OrtStatus a call returned into an error, and releases it.
func (a *api) check(status uintptr) error {
	if status == statusOK {
		return nil
	}
	defer a.releaseStatus(status)
	return errors.New(a.getErrorMessage(status))
}

// cString is s as C reads it, NUL-terminated; the caller keeps the slice
// alive for as long as C may read it.
func cString(s string) ([]byte, error) {
	if strings.IndexByte(s, 0) >= 0 {
		return nil, fmt.Errorf("%q contains a NUL byte", s)
	}
	return append([]byte(s), 0), nil
}

// goString copies the NUL-terminated string C wrote at p.
func goString(p *byte) string {
	if p == nil {
		return ""
	}
	n := 0
	for *(*byte)(unsafe.Add(unsafe.Pointer(p), n)) != 0 {
		n++
	}
	return string(unsafe.Slice(p, n))
}
