package ort_test

import (
	"strconv"

	"google.golang.org/protobuf/encoding/protowire"
)

// Tiny ONNX models, written field by field (onnx.proto's numbers), for what
// the shared model cannot show: inputs Surge refuses, dimensions left open.

// Tensor element types (TensorProto.DataType).
const (
	floatElement = 1
	int64Element = 7
)

// unaryModel is y = op(x), both declared of element type elem and of the
// given dimensions, each a number or a name left open.
func unaryModel(op string, elem int, dims ...string) []byte {
	return model(
		node(op, []string{"x"}, "y"),
		[][]byte{valueInfo("x", elem, dims)},
		valueInfo("y", elem, dims))
}

// addModel is c = a + b over float32 tensors of shape [n, 3].
func addModel() []byte {
	dims := []string{"n", "3"}
	return model(
		node("Add", []string{"a", "b"}, "c"),
		[][]byte{valueInfo("a", floatElement, dims), valueInfo("b", floatElement, dims)},
		valueInfo("c", floatElement, dims))
}

func model(node []byte, inputs [][]byte, output []byte) []byte {
	var graph []byte
	graph = protowire.AppendTag(graph, 1, protowire.BytesType) // node
	graph = protowire.AppendBytes(graph, node)
	graph = appendString(graph, 2, "test") // name
	for _, in := range inputs {
		graph = protowire.AppendTag(graph, 11, protowire.BytesType) // input
		graph = protowire.AppendBytes(graph, in)
	}
	graph = protowire.AppendTag(graph, 12, protowire.BytesType) // output
	graph = protowire.AppendBytes(graph, output)

	var opset []byte
	opset = appendString(opset, 1, "") // domain: the default one
	opset = protowire.AppendTag(opset, 2, protowire.VarintType)
	opset = protowire.AppendVarint(opset, 12) // version

	var m []byte
	m = protowire.AppendTag(m, 1, protowire.VarintType) // ir_version
	m = protowire.AppendVarint(m, 7)
	m = protowire.AppendTag(m, 7, protowire.BytesType) // graph
	m = protowire.AppendBytes(m, graph)
	m = protowire.AppendTag(m, 8, protowire.BytesType) // opset_import
	return protowire.AppendBytes(m, opset)
}

func node(op string, inputs []string, output string) []byte {
	var n []byte
	for _, in := range inputs {
		n = appendString(n, 1, in)
	}
	n = appendString(n, 2, output)
	return appendString(n, 4, op) // op_type
}

// valueInfo is a ValueInfoProto naming a tensor of type elem and shape dims.
func valueInfo(name string, elem int, dims []string) []byte {
	var shape []byte
	for _, d := range dims {
		var dim []byte
		if v, err := strconv.ParseUint(d, 10, 63); err == nil {
			dim = protowire.AppendTag(dim, 1, protowire.VarintType) // dim_value
			dim = protowire.AppendVarint(dim, v)
		} else {
			dim = appendString(dim, 2, d) // dim_param
		}
		shape = protowire.AppendTag(shape, 1, protowire.BytesType)
		shape = protowire.AppendBytes(shape, dim)
	}
	var tensor []byte
	tensor = protowire.AppendTag(tensor, 1, protowire.VarintType) // elem_type
	tensor = protowire.AppendVarint(tensor, uint64(elem))
	tensor = protowire.AppendTag(tensor, 2, protowire.BytesType) // shape
	tensor = protowire.AppendBytes(tensor, shape)

	var typ []byte
	typ = protowire.AppendTag(typ, 1, protowire.BytesType) // tensor_type
	typ = protowire.AppendBytes(typ, tensor)

	var v []byte
	v = appendString(v, 1, name)
	v = protowire.AppendTag(v, 2, protowire.BytesType) // type
	return protowire.AppendBytes(v, typ)
}

func appendString(b []byte, field protowire.Number, s string) []byte {
	b = protowire.AppendTag(b, field, protowire.BytesType)
	return protowire.AppendString(b, s)
}
