package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/jsii-runtime-go"

	"github.com/surgeml/surge/internal/deploy"
)

// goBuild is a CDK local bundling step: `go build` of one of the
// repository's commands into the asset directory. No Docker is involved.
type goBuild struct {
	repo   string // repository root
	pkg    string // ./worker
	binary string // file name in the asset
	goos   string
	goarch string
	cgo    bool   // needs cgo: must be built on a matching host
	tags   string // build tags
}

// TryBundle implements awscdk.ILocalBundling.
func (g *goBuild) TryBundle(outputDir *string, _ *awscdk.BundlingOptions) *bool {
	if g.cgo && (runtime.GOOS != g.goos || runtime.GOARCH != g.goarch) {
		fmt.Fprintf(os.Stderr, "cdk: %s needs cgo and must be built on %s/%s (this is %s/%s)\n", g.pkg, g.goos, g.goarch, runtime.GOOS, runtime.GOARCH)
		return jsii.Bool(false)
	}
	args := []string{"build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w", "-o", filepath.Join(*outputDir, g.binary)}
	if g.tags != "" {
		args = append(args, "-tags", g.tags)
	}
	cmd := exec.Command("go", append(args, g.pkg)...)
	cmd.Dir = g.repo
	cgo := "0"
	if g.cgo {
		cgo = "1"
	}
	cmd.Env = append(os.Environ(), "GOOS="+g.goos, "GOARCH="+g.goarch, "CGO_ENABLED="+cgo)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "cdk: building %s: %v\n", g.pkg, err)
		return jsii.Bool(false)
	}
	// A cgo binary links against the build host's glibc; one needing a
	// newer glibc than the instances' would only fail when it starts there.
	if g.cgo {
		if err := deploy.CheckGlibc(filepath.Join(*outputDir, g.binary), deploy.GlibcAL2023); err != nil {
			fmt.Fprintf(os.Stderr, "cdk: %s will not start on Amazon Linux 2023 (glibc %s): %v\n", g.pkg, deploy.GlibcAL2023, err)
			return jsii.Bool(false)
		}
	}
	return jsii.Bool(true)
}

// bundling runs g at synth time. The asset is named by a hash of the
// build's target and the repository's Go sources, so a change anywhere in
// the code makes a new asset, and an unchanged tree reuses the last one.
func bundling(g goBuild, output awscdk.BundlingOutput) (*awscdk.BundlingOptions, *string) {
	return &awscdk.BundlingOptions{
		// Required by the API; never pulled, since the local build runs.
		Image:      awscdk.DockerImage_FromRegistry(jsii.String("scratch")),
		Local:      &g,
		OutputType: output,
	}, jsii.String(sourceHash(g))
}

func sourceHash(g goBuild) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s %s %s/%s cgo=%v tags=%s\n", g.pkg, g.binary, g.goos, g.goarch, g.cgo, g.tags)
	var files []string
	filepath.WalkDir(g.repo, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != g.repo && (strings.HasPrefix(d.Name(), ".") || slices.Contains([]string{"bin", "cdk.out", "node_modules", "testdata"}, d.Name())) {
			return filepath.SkipDir
		}
		if name := d.Name(); strings.HasSuffix(name, ".go") || name == "go.mod" || name == "go.sum" || strings.HasSuffix(name, ".sql") {
			files = append(files, path)
		}
		return nil
	})
	slices.Sort(files)
	for _, f := range files {
		rel, _ := filepath.Rel(g.repo, f)
		fmt.Fprintf(h, "%s\n", rel)
		if r, err := os.Open(f); err == nil {
			io.Copy(h, r)
			r.Close()
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}
