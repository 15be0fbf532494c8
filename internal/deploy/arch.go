package deploy

import "strings"

// InstanceArch is the Go architecture of an EC2 instance type: arm64 for
// Graviton (a1, or a "g" among the letters after the family's generation
// digit: t4g, m7gd, c6gn, im4gn; not GPU families such as g4dn), else
// amd64. Surge's binaries are built, and ONNX Runtime shipped, for it.
func InstanceArch(instanceType string) string {
	family, _, _ := strings.Cut(instanceType, ".")
	if family == "a1" {
		return "arm64"
	}
	if i := strings.IndexAny(family, "0123456789"); i >= 0 && strings.Contains(strings.TrimLeft(family[i:], "0123456789"), "g") {
		return "arm64"
	}
	return "amd64"
}
