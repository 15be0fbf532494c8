// Package emulate runs Surge's AWS deployment on one machine: moto_server
// behind an endpoint that adds the AWS behaviours moto lacks
// (internal/moto), into which the AWS CDK CLI itself deploys the stack,
// as a user deploys into an account (cdk bootstrap, cdk deploy, cdk
// destroy). Every process of the emulation, and any aws CLI or boto3
// pointed at it, sees the same endpoint. What moto cannot do at all,
// stand-ins do, each named as such:
//
//   - instances: for every instance EC2 reports running, a directory
//     stands for its disk; after a boot delay the instance's own user data
//     runs in bash (with stand-ins for systemd, dnf, shutdown and the
//     CloudWatch agent), fetching the binaries, the ONNX Runtime library
//     and the model from the stack's assets with the real aws CLI; then
//     the units it enabled run, restarted as systemd would; a stand-in
//     metadata service gives each instance its id, name and role
//     credentials (IMDSv2 only);
//   - the front door: the web instance's Elastic IP, or the load balancer
//     in front of a group of web instances, is one port of this machine,
//     which every web tier listens on through a socket the emulator opens
//     with SO_REUSEPORT and hands it (front.go): the kernel spreads the
//     connections, and no proxy stands in between;
//   - Lambda and EventBridge: the stack's functions run in-process, by
//     handler name, with their deployed environment, on their rule's
//     schedule, and as CloudFormation custom resources.
package emulate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/surgeml/surge/internal/aws"
	"github.com/surgeml/surge/internal/deploy"
	"github.com/surgeml/surge/internal/moto"
	"github.com/surgeml/surge/internal/scaler"
)

// Lifecycle is how long an instance takes on AWS to reach each stage, at
// time scale 1.
type Lifecycle struct {
	Pending      time.Duration // launch → running
	Boot         time.Duration // running → user data starts
	ShuttingDown time.Duration // terminate → terminated
}

// AWSLifecycle is roughly what a t3 instance with Amazon Linux 2023 and an
// encrypted gp3 root takes, as commonly measured (e.g. "EC2 Launch
// Times", martysweet.co.uk, 2023: AL2023 is the fastest-booting
// general-purpose AMI, encryption slows launches).
var AWSLifecycle = Lifecycle{Pending: 10 * time.Second, Boot: 15 * time.Second, ShuttingDown: 10 * time.Second}

// Account is what the emulated account allows.
type Account struct {
	VCPUQuota         int      // Running On-Demand Standard instances, vCPUs; 0 = unlimited
	NoCapacity        []string // zones without capacity for new instances
	Unsupported       []string // zone:type pairs, instance types a zone does not offer
	LambdaConcurrency int      // the account's Lambda concurrency limit [1000]
	TakenBucketNames  []string // global S3 names other accounts own
	// RolePropagation is how long the stack's functions' calls are
	// refused after each one's first, as while IAM propagates the roles
	// the stack has just made them [0].
	RolePropagation time.Duration
}

// Config describes an emulated cloud. Zero values take the defaults in
// brackets.
type Config struct {
	DataDir  string // logs, instance disks
	Region   string // [us-east-1]
	Endpoint string // where the emulated AWS listens [127.0.0.1:0]
	// WebHost and WebPort are where the web tiers' instances listen on
	// this machine, the front door (front.go) [127.0.0.1, and any free
	// port, taken for the emulation's life].
	WebHost   string
	WebPort   int
	TimeScale float64   // multiplies every AWS delay and boot-script sleep [1]
	Lifecycle Lifecycle // [AWSLifecycle]
	Account   Account
	// FailBoots makes the downloads of the first this-many worker
	// instances fail for good (403, as when a role lacks a permission).
	FailBoots int
	// CDK is the AWS CDK CLI's bin/cdk, which deploys and destroys
	// stacks (deploy.ResolveCLI finds the pinned one).
	CDK string
	// Repo is the repository root: the CLI runs there, so cdk.json
	// names the app DeployApp synthesizes.
	Repo string
	// CDKOutput receives the CLI's output as it runs, besides the log
	// (nil: the log only).
	CDKOutput io.Writer
	// HostBuilds stand in, on instances of another architecture than
	// this machine's, for the files they install (foreign.go).
	HostBuilds HostBuilds
}

func (c *Config) defaults() {
	if c.Region == "" {
		c.Region = "us-east-1"
	}
	if c.Endpoint == "" {
		c.Endpoint = "127.0.0.1:0"
	}
	if c.WebHost == "" {
		c.WebHost = "127.0.0.1"
	}
	if c.TimeScale <= 0 {
		c.TimeScale = 1
	}
	if c.Lifecycle == (Lifecycle{}) {
		c.Lifecycle = AWSLifecycle
	}
}

func (c Config) scaled(d time.Duration) time.Duration {
	return time.Duration(float64(d) * c.TimeScale)
}

// Cloud is a running emulated AWS account and region.
type Cloud struct {
	Moto     *moto.Server
	Endpoint *moto.Proxy
	Clients  *aws.Clients // the emulator's own, through the endpoint
	Region   string

	cfg      Config
	logs     string
	cli      *deploy.CLI
	machines *machines
	lambdas  *functions
	stop     context.CancelFunc
	wg       sync.WaitGroup
	files    []io.Closer

	mu           sync.Mutex
	bootstrapped bool
	apps         map[string]deploy.App // by stack name: what deployed it, to destroy it with
}

// Start brings up an empty emulated account: moto, the endpoint in front
// of it, the instance emulator and the Lambda stand-in.
func Start(ctx context.Context, cfg Config, log *slog.Logger) (_ *Cloud, err error) {
	cfg.defaults()
	if cfg.DataDir, err = filepath.Abs(cfg.DataDir); err != nil {
		return nil, err
	}
	c := &Cloud{cfg: cfg, Region: cfg.Region, logs: filepath.Join(cfg.DataDir, "logs"), apps: map[string]deploy.App{}}
	if err := os.MkdirAll(c.logs, 0o750); err != nil {
		return nil, err
	}
	awsCLI, err := awsCLIDir()
	if err != nil {
		return nil, err
	}
	shims := filepath.Join(cfg.DataDir, "shims")
	if err := writeShims(shims); err != nil {
		return nil, err
	}
	if c.Moto, err = moto.StartServer(ctx, filepath.Join(c.logs, "moto.log")); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			c.Stop(context.Background())
		}
	}()
	c.lambdas = &functions{region: cfg.Region, logs: c.logs, log: log.With("component", "lambda"),
		scalers: map[string]*scaler.Handler{}, outputs: map[string]io.Writer{}, schedule: map[string]context.CancelFunc{}}
	endpointLog, err := c.logFile("endpoint.log")
	if err != nil {
		return nil, err
	}
	if c.Endpoint, err = moto.StartProxy(ctx, moto.ProxyConfig{
		Upstream:         c.Moto.URL,
		Listen:           cfg.Endpoint,
		Log:              slog.New(slog.NewJSONHandler(endpointLog, nil)),
		VCPUQuota:        cfg.Account.VCPUQuota,
		NoCapacity:       cfg.Account.NoCapacity,
		Unsupported:      cfg.Account.Unsupported,
		PendingFor:       cfg.scaled(cfg.Lifecycle.Pending),
		ShuttingDownFor:  cfg.scaled(cfg.Lifecycle.ShuttingDown),
		TakenBucketNames: cfg.Account.TakenBucketNames,
		ConcurrencyLimit: cfg.Account.LambdaConcurrency,
		// The Lambda stand-in's callers (see functions.awsOptions).
		RolePropagation: map[string]time.Duration{"lambda-*": cfg.Account.RolePropagation},
		Lambdas:         c.lambdas,
	}); err != nil {
		return nil, fmt.Errorf("starting the emulated AWS endpoint: %w", err)
	}
	if c.Clients, err = aws.LoadClients(ctx, aws.Endpoint(c.Endpoint.URL(), cfg.Region, "emulator")...); err != nil {
		return nil, err
	}
	c.lambdas.endpoint = c.Endpoint.URL()
	c.lambdas.lambda = lambda.NewFromConfig(c.Clients.Config)
	c.lambdas.events = eventbridge.NewFromConfig(c.Clients.Config)
	if c.cli, err = c.newCLI(); err != nil {
		return nil, err
	}
	c.machines = &machines{
		cfg: cfg, ec2: c.Clients.EC2, endpoint: c.Endpoint.URL(), shims: shims, awsCLI: awsCLI,
		dir: filepath.Join(cfg.DataDir, "instances"), logs: c.logs, log: log.With("component", "instances"),
		failDownloads: func(id string) { c.Endpoint.FailDownloads(id, true) },
		running:       map[string]*instance{}, stopped: map[string]*instance{}, failLeft: cfg.FailBoots,
	}
	if err := c.machines.reserveFront(); err != nil {
		return nil, err
	}
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	c.stop = stop
	c.wg.Add(2)
	go func() { defer c.wg.Done(); c.machines.run(runCtx) }()
	go func() { defer c.wg.Done(); c.lambdas.follow(runCtx) }()
	return c, nil
}

func (c *Cloud) logFile(name string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(c.logs, name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err == nil {
		c.files = append(c.files, f)
	}
	return f, err
}

// newCLI is the CDK CLI pointed at the emulated cloud, and at nothing
// else: the user's AWS profile and files are out of its sight. Its
// output goes to the log cdk.log (and CDKOutput).
func (c *Cloud) newCLI() (*deploy.CLI, error) {
	if c.cfg.CDK == "" {
		return nil, errors.New("no AWS CDK CLI configured (emulate.Config.CDK)")
	}
	home := filepath.Join(c.cfg.DataDir, "cdk-home")
	if err := os.MkdirAll(home, 0o750); err != nil {
		return nil, err
	}
	out, err := c.logFile("cdk.log")
	if err != nil {
		return nil, err
	}
	var w io.Writer = out
	if c.cfg.CDKOutput != nil {
		w = io.MultiWriter(out, c.cfg.CDKOutput)
	}
	return &deploy.CLI{
		Bin: c.cfg.CDK,
		Dir: c.cfg.Repo,
		Env: append(c.Env(),
			"CDK_HOME="+home,
			"AWS_CONFIG_FILE="+filepath.Join(home, "no-aws-config"),
			"AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(home, "no-aws-credentials")),
		Unset: []string{"AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"},
		Out:   w,
	}, nil
}

// bootstrap runs `cdk bootstrap` once for the emulated account and
// region, as a user does once for theirs.
func (c *Cloud) bootstrap(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.bootstrapped {
		return nil
	}
	id, err := sts.NewFromConfig(c.Clients.Config).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		return fmt.Errorf("finding the emulated account: %w", err)
	}
	if err := c.cli.Bootstrap(ctx, sdk.ToString(id.Account), c.Region); err != nil {
		return fmt.Errorf("bootstrapping the emulated account (see %s): %w", filepath.Join(c.logs, "cdk.log"), err)
	}
	c.bootstrapped = true
	return nil
}

// Deploy deploys the synthesized cloud assembly at dir with `cdk deploy
// --app dir`, bootstrapping the account first if needed; stack names the
// stack deploy returns outputs of ("" when the assembly has one).
func (c *Cloud) Deploy(ctx context.Context, dir, stack string) (*deploy.Stack, error) {
	var stacks []string
	if stack != "" {
		stacks = []string{stack}
	}
	return c.deploy(ctx, deploy.App{Assembly: dir, Stacks: stacks})
}

// DeployApp deploys cdk.json's app as `cdk deploy -c key=value ...` does
// from the repository, synthesizing it into output (empty: cdk.json's).
func (c *Cloud) DeployApp(ctx context.Context, output string, context ...string) (*deploy.Stack, error) {
	return c.deploy(ctx, deploy.App{Context: context, Output: output})
}

func (c *Cloud) deploy(ctx context.Context, app deploy.App) (*deploy.Stack, error) {
	if err := c.bootstrap(ctx); err != nil {
		return nil, err
	}
	st, err := c.cli.Deploy(ctx, app)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.apps[st.Name] = app
	c.mu.Unlock()
	return st, nil
}

// Destroy deletes a stack this cloud deployed with `cdk destroy`, given
// the app that deployed it.
func (c *Cloud) Destroy(ctx context.Context, stackName string) error {
	c.mu.Lock()
	app, ok := c.apps[stackName]
	c.mu.Unlock()
	if !ok {
		return fmt.Errorf("stack %s was not deployed here", stackName)
	}
	return c.cli.Destroy(ctx, app)
}

// WebURL waits until a web tier instance has started its service and
// answers, and returns where: the front door, shared by every web tier
// (front.go).
func (c *Cloud) WebURL(ctx context.Context) (string, error) {
	for {
		if u := c.machines.web(); u != "" {
			if resp, err := httpGet(ctx, u+"healthz"); err == nil && resp == 200 {
				return u, nil
			}
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("waiting for the web tier (see %s): %w", c.logs, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// WebTiers are the ids of the emulated instances whose web tier process
// runs now: the one web-instance, or the web group's instances, all
// serving the front (WebURL).
func (c *Cloud) WebTiers() []string { return c.machines.webTiers() }

// RunningWorkers counts the running instances named app-tier-instance-*,
// as a grader polling the account does.
func (c *Cloud) RunningWorkers(ctx context.Context) (int, error) {
	return RunningWorkers(ctx, c.Clients.EC2)
}

// RunningWorkers counts the running app-tier instances client sees.
func RunningWorkers(ctx context.Context, client *ec2.Client) (int, error) {
	out, err := client.DescribeInstances(ctx, &ec2.DescribeInstancesInput{Filters: []types.Filter{
		{Name: sdk.String("tag:Name"), Values: []string{"app-tier-instance-*"}},
		{Name: sdk.String("instance-state-name"), Values: []string{"running"}},
	}})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, r := range out.Reservations {
		n += len(r.Instances)
	}
	return n, nil
}

// BusyInstance returns the id of an emulated instance whose worker holds
// a request right now.
func (c *Cloud) BusyInstance() (string, bool) { return c.machines.busy() }

// Crash loses an instance at once, as a host failure would: no shutdown,
// no drain.
func (c *Cloud) Crash(ctx context.Context, id string) error { return c.machines.crash(ctx, id) }

// Logs is the directory of the emulation's logs.
func (c *Cloud) Logs() string { return c.logs }

// Stop takes everything down: schedules, instances, the endpoint, moto.
func (c *Cloud) Stop(context.Context) error {
	if c.stop != nil {
		c.stop()
		c.wg.Wait()
	}
	if c.machines != nil {
		c.machines.releaseFront()
	}
	var errs []error
	if c.Endpoint != nil {
		errs = append(errs, c.Endpoint.Close())
	}
	if c.Moto != nil {
		c.Moto.Stop()
	}
	for _, f := range c.files {
		f.Close()
	}
	return errors.Join(errs...)
}

func httpGet(ctx context.Context, url string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// Env is the environment that points the aws CLI, boto3 and the SDKs at
// the emulated cloud.
func (c *Cloud) Env() []string {
	return []string{
		"AWS_ENDPOINT_URL=" + c.Endpoint.URL(),
		"AWS_REGION=" + c.Region,
		"AWS_DEFAULT_REGION=" + c.Region,
		"AWS_ACCESS_KEY_ID=emulated",
		"AWS_SECRET_ACCESS_KEY=emulated",
	}
}

// EnvLine is Env as one line for a shell.
func (c *Cloud) EnvLine() string { return strings.Join(c.Env(), " ") }
