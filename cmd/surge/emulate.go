package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/surgeml/surge/events"
	"github.com/surgeml/surge/internal/assets"
	"github.com/surgeml/surge/internal/config"
	"github.com/surgeml/surge/internal/deploy"
	"github.com/surgeml/surge/internal/emulate"
)

// emulateCmd starts emulated AWS on this machine, deploys the stack into
// it with the AWS CDK CLI as a user deploys (bootstrap, then `cdk deploy`
// of cdk.json's app with the given -c flags), runs it until interrupted,
// and destroys it with `cdk destroy`.
func emulateCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("emulate", flag.ExitOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: surge emulate [flags] [-- -c key=value ...]\n\nThe -c pairs after -- go to cdk deploy and cdk destroy, as CDK context.\n\n")
		fs.PrintDefaults()
	}
	var cfg emulate.Config
	fs.StringVar(&cfg.DataDir, "data", ".emulate", "directory for logs, instance disks and the synthesized app (cdk.out)")
	fs.StringVar(&cfg.Region, "region", cmp.Or(os.Getenv("AWS_REGION"), "us-east-1"), "the emulated region ($AWS_REGION when set)")
	port := fs.Int("endpoint-port", 5000, "port of the emulated AWS endpoint on 127.0.0.1")
	fs.StringVar(&cfg.WebHost, "host", "127.0.0.1", "address the web tier listens on")
	fs.IntVar(&cfg.WebPort, "port", events.WebPort, "port the web tier listens on; 0 picks one")
	fs.Float64Var(&cfg.TimeScale, "time-scale", 1, "multiply AWS's delays (launch, boot, shutdown) and boot-script sleeps by this")
	fs.IntVar(&cfg.Account.VCPUQuota, "vcpu-quota", 0, "the account's on-demand vCPU quota; 0 for none")
	noCapacity := fs.String("no-capacity", "", "comma-separated zones that have no capacity for new instances")
	unsupported := fs.String("unsupported", "", "comma-separated zone:type pairs, instance types a zone does not offer (us-east-1e:t3.small)")
	fs.IntVar(&cfg.Account.LambdaConcurrency, "lambda-concurrency", 10, "the account's Lambda concurrency limit (new accounts: 10)")
	taken := fs.String("taken-buckets", "", "comma-separated bucket names other accounts own")
	fs.DurationVar(&cfg.Account.RolePropagation, "role-propagation", 0, "refuse the stack's functions' calls for this long after each one's first, as while IAM propagates their new roles")
	fs.IntVar(&cfg.FailBoots, "fail-boots", 0, "make the downloads of the first N worker instances fail for good")
	fs.StringVar(&cfg.CDK, "cdk", "", "the AWS CDK CLI's bin/cdk (default: the pinned version, fetched into the cache)")
	keep := fs.Bool("keep", false, "on stop, leave the stack deployed instead of running cdk destroy")
	if err := config.Parse(fs, args, os.Getenv); err != nil {
		return err
	}
	cdkContext, err := contextPairs(fs.Args())
	if err != nil {
		return err
	}
	if cfg.DataDir, err = filepath.Abs(cfg.DataDir); err != nil {
		return err
	}
	cfg.Endpoint = net.JoinHostPort("127.0.0.1", strconv.Itoa(*port))
	cfg.Account.NoCapacity = list(*noCapacity)
	cfg.Account.Unsupported = list(*unsupported)
	cfg.Account.TakenBucketNames = list(*taken)
	if cfg.Repo, err = deploy.RepoRoot(); err != nil {
		return err
	}
	cfg.HostBuilds = hostBuilds()
	if cfg.CDK == "" {
		if cfg.CDK, err = deploy.ResolveCLI(ctx, cacheDir(), true, config.Logger()); err != nil {
			return err
		}
	}
	line, logs := newLiveStatus(os.Stdout, os.Stderr)
	log := config.JSONLogger(logs)
	cfg.CDKOutput = logs

	// The cloud outlives Ctrl-C, which ends the run: cdk destroy needs it.
	cloud, err := emulate.Start(context.WithoutCancel(ctx), cfg, log)
	if err != nil {
		return err
	}
	defer cloud.Stop(context.Background())
	fmt.Fprintf(logs, "emulated AWS at %s (%s); deploying with the AWS CDK CLI: cdk deploy %s\n",
		cloud.Endpoint.URL(), cfg.Region, strings.Join(contextFlags(cdkContext), " "))
	st, err := cloud.DeployApp(ctx, filepath.Join(cfg.DataDir, "cdk.out"), cdkContext...)
	if err != nil {
		return err
	}
	if !*keep {
		defer destroy(cloud, st.Name, logs)
	}
	boot, cancel := context.WithTimeout(ctx, 10*time.Minute)
	web, err := cloud.WebURL(boot)
	cancel()
	if err != nil {
		return err
	}
	var outputs []string
	for _, k := range slices.Sorted(maps.Keys(st.Outputs)) {
		outputs = append(outputs, fmt.Sprintf("  %-20s %s", k, st.Outputs[k]))
	}
	fmt.Fprintf(os.Stderr, `
Surge stack %s on emulated AWS (%s), deployed with the AWS CDK CLI.
Web tier: %s   (the stack's WebUrl names the emulated %s; this is where the web tier listens here)
Stack outputs:
%s
Point the aws CLI or boto3 at it:
  export %s
  aws ec2 describe-instances --filters Name=tag:Name,Values=app-tier-instance-*
  python3 -c "import boto3; print(boto3.client('sqs').list_queues())"
Advance its clock:  curl -X POST '%s/_surge/clock?advance=2h'
Logs (web tier, instances, Lambdas, endpoint, the CDK CLI): %s
Stop: Ctrl-C (then cdk destroy runs; Ctrl-C again skips it)

`, st.Name, cfg.Region, web, webFront(st.Outputs), strings.Join(outputs, "\n"), strings.Join(cloud.Env(), " "), cloud.Endpoint.URL(), cloud.Logs())
	if line != nil {
		stop := line.start(ctx, web, nil)
		<-ctx.Done()
		stop()
		fmt.Fprintln(os.Stderr, "stopping")
		return nil
	}
	last := -1
	for ctx.Err() == nil {
		if n, err := cloud.RunningWorkers(ctx); err == nil && n != last {
			fmt.Fprintf(os.Stderr, "%s  app-tier instances running: %d\n", time.Now().Format("15:04:05"), n)
			last = n
		}
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Second):
		}
	}
	fmt.Fprintln(os.Stderr, "stopping")
	return nil
}

// hostBuilds are this machine's builds of what instances install, beside
// this command (make build puts them there) and in the cache (make ort),
// for the emulated instances of another CPU.
func hostBuilds() emulate.HostBuilds {
	builds := emulate.HostBuilds{}
	if exe, err := os.Executable(); err == nil {
		for _, name := range []string{"worker", "webtier"} {
			if p := filepath.Join(filepath.Dir(exe), name); fileExists(p) {
				builds[name] = p
			}
		}
	}
	if lib := filepath.Join(cacheDir(), filepath.FromSlash(assets.RuntimeFile(goruntime.GOARCH))); fileExists(lib) {
		builds["libonnxruntime.so.1"] = lib
	}
	return builds
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// destroy runs `cdk destroy` of the stack, as a user ends a deployment;
// a second Ctrl-C abandons it.
// webFront is what the stack's WebUrl names: a load balancer when the
// stack has a web group (webMax), else the one web instance.
func webFront(outputs map[string]string) string {
	if _, group := outputs["WebGroupName"]; group {
		return "load balancer, which the emulation does not route through (each web instance serves this one port)"
	}
	return "instance"
}

func destroy(cloud *emulate.Cloud, stack string, out io.Writer) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	fmt.Fprintf(out, "destroying stack %s with the AWS CDK CLI (cdk destroy; Ctrl-C again to skip)\n", stack)
	if err := cloud.Destroy(ctx, stack); err != nil {
		fmt.Fprintf(out, "destroying stack %s: %v\n", stack, err)
		return
	}
	fmt.Fprintf(out, "stack %s destroyed\n", stack)
}

// contextPairs reads `-c key=value` (or --context) arguments into
// key=value pairs.
func contextPairs(args []string) ([]string, error) {
	var pairs []string
	for i := 0; i < len(args); i++ {
		if (args[i] != "-c" && args[i] != "--context") || i+1 == len(args) || !strings.Contains(args[i+1], "=") {
			return nil, fmt.Errorf("unexpected argument %q: after the flags, give CDK context as -c key=value", args[i])
		}
		i++
		pairs = append(pairs, args[i])
	}
	return pairs, nil
}

func contextFlags(pairs []string) []string {
	var out []string
	for _, p := range pairs {
		out = append(out, "-c", p)
	}
	return out
}

func list(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}
