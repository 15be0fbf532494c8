package main

import (
	"context"
	"errors"
	"os"
	"os/exec"

	"github.com/surgeml/surge/internal/config"
	"github.com/surgeml/surge/internal/deploy"
	"github.com/surgeml/surge/internal/recognize"
)

// cdkCmd runs the pinned AWS CDK CLI with the given arguments, in this
// terminal: `surge cdk deploy -c prefix=...` is `npx aws-cdk@2 deploy -c
// prefix=...` with the CLI the tests use.
func cdkCmd(ctx context.Context, args []string) error {
	node, err := deploy.Node()
	if err != nil {
		return err
	}
	bin, err := deploy.ResolveCLI(ctx, cacheDir(), true, config.Logger())
	if err != nil {
		return err
	}
	cmd := exec.Command(node, append([]string{bin}, args...)...)
	cmd.Env = append(os.Environ(), deploy.QuietEnv()...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	// Ctrl-C reaches the CLI from the terminal; it decides how to stop.
	if err := cmd.Run(); err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			os.Exit(exit.ExitCode())
		}
		return err
	}
	return nil
}

// cacheDir is where downloads are kept, as -cache says for the other
// commands: $SURGE_CACHE, else the user's cache directory.
func cacheDir() string {
	if dir := os.Getenv("SURGE_CACHE"); dir != "" {
		return dir
	}
	return recognize.DefaultCache()
}
