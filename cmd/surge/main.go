// Command surge is the toolbox around the deployables: run the whole
// system locally, classify files directly, enroll a gallery, generate load
// and benchmark.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

const usage = `usage: surge <command> [flags]

commands:
  run        start the whole system locally (web tier, scaler, worker fleet)
  emulate    deploy the stack with the CDK CLI into emulated AWS (moto_server) and run it
  cdk        run the pinned AWS CDK CLI (as npx aws-cdk@2 would), e.g. surge cdk deploy -c prefix=...
  classify   print <stem>:<label> for image files, without the pipeline
  enroll     build a gallery file from a folder of labelled images
  workload   upload a folder to a web tier and check the answers
  bench      measure classification, pipeline throughput, latency and memory
  bench-cloud  the pipeline with AWS's per-call latency and instance boot times
  chaos      run the face workload while killing workers and restarting the system; count what was lost
  fetch      download and verify the ONNX Runtime library and the model (-cdk-cli: the AWS CDK CLI)
  serve-model  answer the external model protocol on stdin/stdout with the ONNX model (docs/models.md)

Run "surge <command> -h" for a command's flags.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	commands := map[string]func(ctx context.Context, args []string) error{
		"run":         runCmd,
		"emulate":     emulateCmd,
		"cdk":         cdkCmd,
		"classify":    classifyCmd,
		"enroll":      enrollCmd,
		"workload":    workloadCmd,
		"bench":       benchCmd,
		"bench-cloud": benchCloudCmd,
		"chaos":       chaosCmd,
		"fetch":       fetchCmd,
		"serve-model": serveModelCmd,
	}
	cmd, ok := commands[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "surge: unknown command %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := cmd(ctx, os.Args[2:]); err != nil {
		fmt.Fprintf(os.Stderr, "surge %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}
