// Command cdk defines Surge's AWS deployment with the AWS CDK: queues,
// buckets, least-privilege roles, the workers' launch template, the web
// tier instance and the scheduled scaler Lambda. `cdk deploy` (cdk.json
// runs this) stands it up; `make synth` writes the template offline.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/jsii-runtime-go"

	"github.com/surgeml/surge/internal/deploy"
)

func main() {
	os.Exit(synthApp())
}

// synthApp runs the app and is its exit code, once the jsii runtime has
// stopped and stderr is out.
func synthApp() int {
	flush, err := quietJsiiStderr()
	if err != nil {
		fmt.Fprintln(os.Stderr, "cdk:", err)
		return 1
	}
	defer flush()
	defer jsii.Close()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "cdk:", err)
		return 1
	}
	return 0
}

func run() error {
	repo, err := deploy.RepoRoot()
	if err != nil {
		return err
	}
	// The CDK CLI says where to write; on our own (`make synth`) it is
	// cdk.out, as cdk.json names it.
	outdir := os.Getenv("CDK_OUTDIR")
	if outdir == "" {
		outdir = filepath.Join(repo, "cdk.out")
	}
	context, err := contextArgs(os.Args[1:])
	if err != nil {
		return err
	}
	// The CDK records where each annotation was made, for the CLI to
	// print above it; in a jsii app that is always a line of the jsii
	// runtime's own bundle (.../jsii-runtime.../lib/program.js:1:5565),
	// which tells a reader nothing.
	context["aws:cdk:disable-stack-trace"] = true
	app := awscdk.NewApp(&awscdk.AppProps{Outdir: jsii.String(outdir), Context: &context})
	cfg, err := configFromContext(app.Node(), repo)
	if err != nil {
		return err
	}
	NewSurgeStack(app, cfg, stackProps(cfg))
	app.Synth(nil)
	return nil
}

// stackProps keep the template deployable by any account and free of
// things that need the network to synthesize: no bootstrap-version rule,
// no analytics metadata.
func stackProps(cfg Config) *awscdk.StackProps {
	return &awscdk.StackProps{
		StackName:   jsii.String(cfg.StackName),
		Description: jsii.String("Surge: elastic image recognition (" + cfg.Prefix + ")"),
		Synthesizer: awscdk.NewDefaultStackSynthesizer(&awscdk.DefaultStackSynthesizerProps{
			GenerateBootstrapVersionRule: jsii.Bool(false),
		}),
		AnalyticsReporting: jsii.Bool(false),
	}
}

// contextArgs reads `-c key=value` pairs, as the CDK CLI takes them, for
// runs without the CLI (`go run ./cdk -c allowedCidr=...`). The CLI passes
// its context through the environment instead.
func contextArgs(args []string) (map[string]interface{}, error) {
	ctx := map[string]interface{}{}
	for i := 0; i < len(args); i++ {
		if args[i] != "-c" && args[i] != "--context" || i+1 == len(args) {
			return nil, fmt.Errorf("unexpected argument %q (want -c key=value)", args[i])
		}
		i++
		k, v, ok := strings.Cut(args[i], "=")
		if !ok {
			return nil, fmt.Errorf("context %q is not key=value", args[i])
		}
		ctx[k] = v
	}
	return ctx, nil
}
