package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"maps"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/surgeml/surge/events"
	"github.com/surgeml/surge/internal/config"
	"github.com/surgeml/surge/internal/emulate"
)

// emulateCmd deploys a synthesized Surge stack into emulated AWS on this
// machine and runs it until interrupted.
func emulateCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("emulate", flag.ExitOnError)
	var cfg emulate.Config
	assembly := fs.String("assembly", "cdk.out", "the synthesized cloud assembly to deploy (make synth writes cdk.out)")
	stack := fs.String("stack", "", "its stack to deploy (default: the only one)")
	fs.StringVar(&cfg.DataDir, "data", ".emulate", "directory for logs and instance disks")
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
	if err := config.Parse(fs, args, os.Getenv); err != nil {
		return err
	}
	cfg.Endpoint = net.JoinHostPort("127.0.0.1", strconv.Itoa(*port))
	cfg.Account.NoCapacity = list(*noCapacity)
	cfg.Account.Unsupported = list(*unsupported)
	cfg.Account.TakenBucketNames = list(*taken)
	line, logs := newLiveStatus(os.Stdout, os.Stderr)
	log := config.JSONLogger(logs)

	cloud, err := emulate.Start(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer cloud.Stop(context.Background())
	st, err := cloud.Deploy(ctx, *assembly, *stack)
	if err != nil {
		return err
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
Surge stack %s on emulated AWS (%s), deployed from %s.
Web tier: %s   (the stack's WebUrl names the emulated instance; this is where it listens here)
Stack outputs:
%s
Point the aws CLI or boto3 at it:
  export %s
  aws ec2 describe-instances --filters Name=tag:Name,Values=app-tier-instance-*
  python3 -c "import boto3; print(boto3.client('sqs').list_queues())"
Advance its clock:  curl -X POST '%s/_surge/clock?advance=2h'
Logs (web tier, instances, Lambdas, endpoint): %s
Stop: Ctrl-C

`, st.Name, cfg.Region, *assembly, web, strings.Join(outputs, "\n"), strings.Join(cloud.Env(), " "), cloud.Endpoint.URL(), cloud.Logs())
	if line != nil {
		stop := line.start(ctx, web)
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

func list(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}
