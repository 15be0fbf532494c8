// This file runs the AWS CDK CLI, the very program users deploy with
// (`npx aws-cdk@2 deploy`), pinned to one version: the emulator and the
// tests bootstrap, deploy and destroy with it, so the path they test is
// the users' path, cdk.json included.

package deploy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/surgeml/surge/internal/assets"
)

// CLI runs the CDK CLI's bin/cdk script with node.
type CLI struct {
	Bin string // the CLI's bin/cdk (ResolveCLI finds the pinned one)
	// Dir is where the CLI runs: the repository root, whose cdk.json
	// names the app and its settings.
	Dir string
	// Env adds to the process's environment, replacing variables of the
	// same names; Unset removes variables (an emulated deployment drops
	// the user's AWS profile, so nothing reaches a real account).
	Env   []string
	Unset []string
	// Out receives the CLI's output as it runs, as a user would see it
	// (nil: nowhere).
	Out io.Writer
}

// ResolveCLI finds the pinned CDK CLI in cache, downloading and checking
// it when it is not there and download is set. It returns bin/cdk's path.
func ResolveCLI(ctx context.Context, cache string, download bool, log *slog.Logger) (string, error) {
	src := assets.CDKCLISource()
	src.Cache, src.Log = cache, log
	if !download {
		src.URL = ""
	}
	dir, err := assets.ResolveTree(ctx, src)
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "package", "bin", "cdk"), nil
}

// RepoRoot is the directory holding cdk.json at or above the working
// directory: the repository's root, where the CDK CLI runs (and runs the
// app from).
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "cdk.json")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no cdk.json at or above %s: run this in the Surge repository", dir)
		}
	}
}

// Stack is a deployed stack and its outputs.
type Stack struct {
	Name    string
	Outputs map[string]string
}

// App says which app a command works on, as `cdk` flags do.
type App struct {
	// Assembly is a synthesized cloud assembly to deploy as it is
	// (`--app <dir>`); empty runs cdk.json's app, synthesizing it.
	Assembly string
	// Context is `-c key=value` pairs, in order.
	Context []string
	// Output is where a synthesis writes (`--output`); empty: cdk.json's.
	Output string
	// Stacks are the stacks to act on; none: all of the app's.
	Stacks []string
}

func (a App) args() []string {
	var args []string
	if a.Assembly != "" {
		args = append(args, "--app", a.Assembly)
	}
	for _, kv := range a.Context {
		args = append(args, "-c", kv)
	}
	if a.Output != "" {
		args = append(args, "--output", a.Output)
	}
	return args
}

// Bootstrap prepares an account and region for deployments (`cdk
// bootstrap aws://<account>/<region>`): the asset bucket, the roles the
// CLI deploys through, the version parameter.
func (c *CLI) Bootstrap(ctx context.Context, account, region string) error {
	// Run outside the repository: in it, the CLI would synthesize the app
	// first, only to learn the environment it was given anyway.
	dir, err := os.MkdirTemp("", "surge-bootstrap-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	return c.run(ctx, dir, "bootstrap", "aws://"+account+"/"+region)
}

// Deploy deploys the app's stacks (`cdk deploy`), without asking for
// approval, and returns the stack's outputs (the first stack's, if there
// are several).
func (c *CLI) Deploy(ctx context.Context, app App) (*Stack, error) {
	tmp, err := os.MkdirTemp("", "surge-deploy-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	outputs := filepath.Join(tmp, "outputs.json")
	// Progress as one line per event, not a bar redrawn in place.
	args := append(app.args(), "--require-approval", "never", "--progress", "events", "--outputs-file", outputs)
	if err := c.run(ctx, c.Dir, "deploy", append(args, app.Stacks...)...); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(outputs)
	if err != nil {
		return nil, fmt.Errorf("reading the deployment's outputs: %w", err)
	}
	var stacks map[string]map[string]string
	if err := json.Unmarshal(b, &stacks); err != nil {
		return nil, fmt.Errorf("reading the deployment's outputs %s: %w", outputs, err)
	}
	names := slices.Sorted(maps.Keys(stacks))
	if len(app.Stacks) > 0 {
		names = app.Stacks
	}
	if len(names) == 0 {
		return nil, errors.New("the deployment wrote no stack outputs")
	}
	return &Stack{Name: names[0], Outputs: stacks[names[0]]}, nil
}

// Destroy deletes the app's stacks (`cdk destroy --force`) and waits
// until CloudFormation is done.
func (c *CLI) Destroy(ctx context.Context, app App) error {
	return c.run(ctx, c.Dir, "destroy", append(append(app.args(), "--force"), app.Stacks...)...)
}

// run runs one CLI command in dir. Its output goes to c.Out as it
// comes; on failure the error carries the lines that say why.
func (c *CLI) run(ctx context.Context, dir, verb string, args ...string) error {
	node, err := Node()
	if err != nil {
		return err
	}
	if _, err := os.Stat(c.Bin); err != nil {
		return fmt.Errorf("the AWS CDK CLI: %w (run `make cdk-cli`)", err)
	}
	// Notices would be fetched from the internet.
	full := append([]string{c.Bin, verb, "--no-notices"}, args...)
	cmd := exec.CommandContext(ctx, node, full...)
	cmd.Dir = dir
	cmd.Env = environ(os.Environ(), append(QuietEnv(), c.Env...), c.Unset)
	// Stopping the CLI lets it end the app it runs (go run, node) too.
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	var all lockedBuffer
	out := io.Writer(&all)
	if c.Out != nil {
		out = io.MultiWriter(&all, c.Out)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("cdk %s: %w\n%s", verb, err, failureLines(all.String()))
	}
	return nil
}

// QuietEnv keeps the CLI from reaching the internet on its own (usage
// telemetry, the version check) and the CDK's JavaScript runtime from
// printing a banner about Node.js 20's end of life on every synthesis.
func QuietEnv() []string {
	return []string{
		"CDK_DISABLE_CLI_TELEMETRY=true",
		"CDK_DISABLE_VERSION_CHECK=1",
		"JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=20",
	}
}

// Node finds node, which runs the CLI.
func Node() (string, error) {
	node, err := exec.LookPath("node")
	if err != nil {
		return "", errors.New("node (Node.js, which runs the AWS CDK CLI) is not on PATH: install Node.js 20 or later")
	}
	return node, nil
}

// environ is base with set's variables replacing those of the same name,
// and unset's removed.
func environ(base, set, unset []string) []string {
	drop := map[string]bool{}
	for _, k := range unset {
		drop[k] = true
	}
	for _, kv := range set {
		k, _, _ := strings.Cut(kv, "=")
		drop[k] = true
	}
	var env []string
	for _, kv := range base {
		if k, _, _ := strings.Cut(kv, "="); !drop[k] {
			env = append(env, kv)
		}
	}
	return append(env, set...)
}

// failureLines picks out of the CLI's output the lines that say what
// failed (failed resources and their reasons, the CLI's errors), or its
// last lines when none does.
func failureLines(output string) string {
	var picked, all []string
	sc := bufio.NewScanner(strings.NewReader(output))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		all = append(all, line)
		if strings.Contains(line, "FAILED") || strings.Contains(line, "❌") || strings.Contains(line, "rror") || strings.Contains(line, "failed") {
			picked = append(picked, line)
		}
	}
	if len(picked) == 0 {
		picked = all
	}
	if len(picked) > 30 {
		picked = picked[len(picked)-30:]
	}
	return strings.Join(picked, "\n")
}

// lockedBuffer collects output written from the CLI's two streams.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
