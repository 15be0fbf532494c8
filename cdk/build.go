package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/jsii-runtime-go"

	"github.com/surgeml/surge/internal/deploy"
)

// goBuild is a CDK local bundling step: `go build` of one of the
// repository's commands into the asset directory, for any target from any
// host: the build is pure Go (CGO_ENABLED=0; ONNX Runtime is loaded at run
// time), so it needs nothing of the host but Go. No Docker is involved.
type goBuild struct {
	repo   string // repository root
	pkg    string // ./worker
	binary string // file name in the asset
	goos   string
	goarch string
	tags   string // build tags
}

// TryBundle implements awscdk.ILocalBundling. A build that fails stops
// the synthesis with the reason, rather than answering false, after
// which the CDK would try a Docker build that has no chance.
func (g *goBuild) TryBundle(outputDir *string, _ *awscdk.BundlingOptions) *bool {
	if err := g.build(filepath.Join(*outputDir, g.binary)); err != nil {
		panic(fmt.Sprintf("cdk: %v", err))
	}
	return jsii.Bool(true)
}

// build builds the binary at out and checks it against the instances'
// C library.
func (g *goBuild) build(out string) error {
	args := []string{"build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w", "-o", out}
	if g.tags != "" {
		args = append(args, "-tags", g.tags)
	}
	cmd := exec.Command("go", append(args, g.pkg)...)
	cmd.Dir = g.repo
	cmd.Env = append(os.Environ(), "GOOS="+g.goos, "GOARCH="+g.goarch, "CGO_ENABLED=0")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("building %s for %s/%s: %w", g.pkg, g.goos, g.goarch, err)
	}
	// A binary that loads ONNX Runtime is linked dynamically against the
	// C library's loader; one needing a newer glibc than the instances'
	// would only fail when it starts there.
	if err := deploy.CheckGlibc(out, deploy.GlibcAL2023); err != nil {
		return fmt.Errorf("%s will not start on Amazon Linux 2023 (glibc %s): %w", g.pkg, deploy.GlibcAL2023, err)
	}
	return nil
}

// bundling runs g at synth time. The asset is named by a hash of exactly
// what the binary is built from (sourceHash), so an unchanged binary keeps
// its asset, and the instance whose boot script names it stays as it is.
func bundling(g goBuild, output awscdk.BundlingOutput) (*awscdk.BundlingOptions, *string) {
	hash, err := sourceHash(g)
	if err != nil {
		panic(fmt.Sprintf("cdk: hashing the sources of %s: %v", g.pkg, err))
	}
	return &awscdk.BundlingOptions{
		// Required by the API; never pulled, since the local build runs.
		Image:      awscdk.DockerImage_FromRegistry(jsii.String("scratch")),
		Local:      &g,
		OutputType: output,
	}, jsii.String(hash)
}

// sourceHash hashes what `go build` of g compiles: the build's target and
// flags, the Go toolchain's version, each of the module's packages that
// the binary imports (its source, embedded and C files, as go list names
// them for that target) and the version of every other module's. Test
// files, other commands and documents are not part of it.
func sourceHash(g goBuild) (string, error) {
	env := append(os.Environ(), "GOOS="+g.goos, "GOARCH="+g.goarch, "CGO_ENABLED=0")
	version, err := goOutput(g.repo, env, "env", "GOVERSION")
	if err != nil {
		return "", err
	}
	args := []string{"list", "-deps", "-json=ImportPath,Dir,Standard,Module,GoFiles,CgoFiles,CFiles,CXXFiles,HFiles,SFiles,SysoFiles,EmbedFiles"}
	if g.tags != "" {
		args = append(args, "-tags", g.tags)
	}
	listing, err := goOutput(g.repo, env, append(args, g.pkg)...)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s %s %s/%s tags=%s %s\n", g.pkg, g.binary, g.goos, g.goarch, g.tags, strings.TrimSpace(string(version)))
	dec := json.NewDecoder(bytes.NewReader(listing))
	for {
		var pkg struct {
			ImportPath string
			Dir        string
			Standard   bool
			Module     *struct {
				Path, Version string
				Main          bool
				Replace       *struct{ Path, Version string }
			}
			GoFiles, CgoFiles, CFiles, CXXFiles, HFiles, SFiles, SysoFiles, EmbedFiles []string
		}
		if err := dec.Decode(&pkg); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return "", fmt.Errorf("reading go list's packages: %w", err)
		}
		switch {
		case pkg.Standard:
			fmt.Fprintf(h, "std %s\n", pkg.ImportPath)
		case pkg.Module == nil || !pkg.Module.Main:
			mod := "?"
			if m := pkg.Module; m != nil {
				mod = m.Path + "@" + m.Version
				if m.Replace != nil {
					mod += " => " + m.Replace.Path + "@" + m.Replace.Version
				}
			}
			fmt.Fprintf(h, "dep %s %s\n", pkg.ImportPath, mod)
		default:
			files := slices.Concat(pkg.GoFiles, pkg.CgoFiles, pkg.CFiles, pkg.CXXFiles, pkg.HFiles, pkg.SFiles, pkg.SysoFiles, pkg.EmbedFiles)
			slices.Sort(files)
			for _, f := range files {
				b, err := os.ReadFile(filepath.Join(pkg.Dir, f))
				if err != nil {
					return "", err
				}
				fmt.Fprintf(h, "file %s/%s %d\n", pkg.ImportPath, f, len(b))
				h.Write(b)
			}
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// goOutput runs the go command in dir and returns what it printed.
func goOutput(dir string, env []string, args ...string) ([]byte, error) {
	cmd := exec.Command("go", args...)
	cmd.Dir, cmd.Env = dir, env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}
