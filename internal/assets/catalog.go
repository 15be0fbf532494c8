package assets

import (
	"fmt"
	"runtime"
)

// RuntimeVersion is the ONNX Runtime release Surge ships and is tested
// with; RuntimeAPIVersion is the version of its C API that internal/ort's
// binding is written against. ONNX Runtime 1.N offers C APIs 1 to N, so
// internal/ort refuses a library older than 1.22, and uses a newer one
// through the API it knows.
const (
	RuntimeVersion    = "1.22.0"
	RuntimeAPIVersion = 22
)

// RuntimeSource describes ONNX Runtime's CPU library for this machine
// (Linux only), as RuntimeSourceFor does.
func RuntimeSource() (Source, error) {
	if runtime.GOOS != "linux" {
		return Source{}, fmt.Errorf("no known ONNX Runtime %s build for %s/%s", RuntimeVersion, runtime.GOOS, runtime.GOARCH)
	}
	return RuntimeSourceFor(runtime.GOARCH)
}

// RuntimeSourceFor describes ONNX Runtime's CPU library for linux/goarch
// (amd64 or arm64: what Surge's instances run) as npm ships it (package
// onnxruntime-node), which is how it is fetched when no local copy is
// configured.
func RuntimeSourceFor(goarch string) (Source, error) {
	var arch, sum string
	switch goarch {
	case "amd64":
		arch, sum = "x64", "08cf3bf4218f0e816c2a534e960d85221274cb319569bdf1136b29da7065b015"
	case "arm64":
		arch, sum = "arm64", "0afd69a0ae38c5099fd0e8604dda398ac43dee67cd9c6394b5142b19e82528de"
	default:
		return Source{}, fmt.Errorf("no known ONNX Runtime %s build for linux/%s", RuntimeVersion, goarch)
	}
	return Source{
		What:   fmt.Sprintf("ONNX Runtime %s (linux/%s)", RuntimeVersion, arch),
		File:   RuntimeFile(goarch),
		URL:    fmt.Sprintf("https://registry.npmjs.org/onnxruntime-node/-/onnxruntime-node-%s.tgz", RuntimeVersion),
		Member: fmt.Sprintf("package/bin/napi-v6/linux/%s/libonnxruntime.so.1", arch),
		SHA256: sum,
	}, nil
}

// RuntimeFile is where, under a cache or mirror, the library for
// linux/goarch is kept.
func RuntimeFile(goarch string) string {
	arch := map[string]string{"amd64": "x64"}[goarch]
	if arch == "" {
		arch = goarch
	}
	return fmt.Sprintf("onnxruntime/%s/linux-%s/libonnxruntime.so.1", RuntimeVersion, arch)
}

// knownModel returns the digests of a model folder's files for the models
// Surge has been checked with.
func knownModel(name string) (model, labels string, ok bool) {
	switch name {
	case "mobilenetv2-12-int8":
		return "cc028fe6cae7bc11a4ff53cfc9b79c920e8be65ce33a904ec3e2a8f66d77f95f",
			"c822c670bd3d9d02baf355e43d8cee21afc5605a1e72d674e9c0494eee2f6ea3", true
	}
	return "", "", false
}

// CDKCLIVersion is the AWS CDK CLI that deploys Surge in the tests and
// `make emulate`: the newest aws-cdk@2 when it was pinned (a user's
// `npx aws-cdk@2` takes the newest 2.x of their day). The plain
// `aws-cdk` package is a later major that cannot read this library's
// cloud assemblies.
const CDKCLIVersion = "2.1149.0"

// CDKCLISource describes the CLI's npm package, which bundles all it
// needs (it has no dependencies) and runs on Node.js.
func CDKCLISource() Source {
	return Source{
		What:   "AWS CDK CLI " + CDKCLIVersion,
		File:   fmt.Sprintf("aws-cdk/%s/aws-cdk-%s.tgz", CDKCLIVersion, CDKCLIVersion),
		URL:    fmt.Sprintf("https://registry.npmjs.org/aws-cdk/-/aws-cdk-%s.tgz", CDKCLIVersion),
		SHA256: "fc11f7ea79d34024eb00cf055b40d5d2020361a094298c16c29b01920ab9ad56",
	}
}
