package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// The Lambdas run on provided.al2023 arm64, built without cgo: anything
// they import that needs cgo (the embedded backends' SQLite driver) breaks
// the deploy. This is the fast tier's check; make test builds every
// deployed binary for both CPUs (cdk's TestBuildsOnAnyHostForEitherArchitecture).
func TestLambdasBuildWithoutCgo(t *testing.T) {
	for _, pkg := range []string{".", "../stackhooks"} {
		cmd := exec.Command("go", "build", "-tags", "lambda.norpc", "-o", filepath.Join(t.TempDir(), "bootstrap"), pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=arm64")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("building %s without cgo: %v\n%s", pkg, err, out)
		}
	}
}
