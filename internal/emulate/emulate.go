// Package emulate runs Surge's AWS deployment on one machine against
// moto_server: the real SQS, S3 and EC2 adapters, the real web tier and
// worker binaries with -backend aws, and the real scaler Lambda handler,
// invoked on a local schedule in place of EventBridge. What moto cannot do
// (boot an instance) an instance emulator does: for every app-tier
// instance moto reports running it starts a worker process configured by
// the launch template's user data, with a stand-in metadata service, and
// it kills the process when moto reports the instance gone.
package emulate

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"time"

	awsevents "github.com/aws/aws-lambda-go/events"

	"github.com/surgeml/surge/internal/awscfg"
	"github.com/surgeml/surge/internal/backend"
	"github.com/surgeml/surge/internal/ec2fleet"
	"github.com/surgeml/surge/internal/lambdascaler"
	"github.com/surgeml/surge/internal/logging"
	"github.com/surgeml/surge/internal/motoserver"
	"github.com/surgeml/surge/internal/scaler"
	"github.com/surgeml/surge/internal/webproc"
)

// Files are the local copies of what user data installs on an instance.
type Files struct {
	RuntimeLib string // libonnxruntime.so
	Model      string // model.onnx (labels.txt beside it)
	Gallery    string // optional gallery file
}

// Config describes an emulated deployment. Zero values take the defaults
// in brackets.
type Config struct {
	Bin        string // directory of the webtier and worker binaries
	DataDir    string // logs and instance state
	Prefix     string // [surge]
	Host       string
	Port       int // web tier port; 0 picks one
	MaxWorkers int // [19]
	Files      Files
	// Schedule is the EventBridge rule's period [1m]; each invocation
	// reconciles every Tick [1s] until shortly before the next.
	Schedule, Tick time.Duration
	ScaleInDelay   time.Duration // [1s]
	Visibility     time.Duration // request queue visibility timeout [10s]
	MaxReceives    int           // before the dead-letter queue [5]
	IdleShutdown   time.Duration // workers terminate their own instance after this idle [3s]
	Concurrency    int           // per worker [1]
}

func (c *Config) defaults() {
	set := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	set(&c.Schedule, time.Minute)
	set(&c.Tick, time.Second)
	set(&c.ScaleInDelay, time.Second)
	set(&c.Visibility, 10*time.Second)
	set(&c.IdleShutdown, 3*time.Second)
	if c.Prefix == "" {
		c.Prefix = "surge"
	}
	if c.MaxWorkers <= 0 {
		c.MaxWorkers = 19
	}
	if c.MaxReceives <= 0 {
		c.MaxReceives = 5
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 1
	}
}

// Cloud is a running emulated deployment.
type Cloud struct {
	Moto    *motoserver.Server
	Clients *awscfg.Clients // pointed at moto
	Names   backend.Names
	URL     string // the web tier

	logs      string
	lambdaLog *os.File // what CloudWatch Logs would hold: decisions and metrics
	web       *webproc.Process
	stop      context.CancelFunc
	done      chan struct{}
	instances *instances
}

// Start brings the emulated deployment up.
func Start(ctx context.Context, cfg Config, log *slog.Logger) (_ *Cloud, err error) {
	cfg.defaults()
	if cfg.DataDir, err = filepath.Abs(cfg.DataDir); err != nil {
		return nil, err
	}
	logs := filepath.Join(cfg.DataDir, "logs")
	if err := os.MkdirAll(logs, 0o750); err != nil {
		return nil, err
	}
	moto, err := motoserver.Start(ctx, filepath.Join(logs, "moto.log"))
	if err != nil {
		return nil, err
	}
	c := &Cloud{Moto: moto, logs: logs, done: make(chan struct{})}
	defer func() {
		if err != nil {
			c.Stop(context.Background())
		}
	}()
	if c.Clients, err = awscfg.Load(ctx, moto.Options()...); err != nil {
		return nil, err
	}
	res, err := bootstrap(ctx, c.Clients, cfg)
	if err != nil {
		return nil, err
	}
	c.Names = res.names
	env := append(moto.Env(), "SURGE_BACKEND=aws", "SURGE_PREFIX="+cfg.Prefix)
	if c.web, err = webproc.Start(ctx, cfg.Bin, []string{"-max-workers", strconv.Itoa(cfg.MaxWorkers)}, env,
		cfg.Host, cfg.Port, filepath.Join(logs, "webtier.log")); err != nil {
		return nil, err
	}
	c.URL = c.web.URL

	userData, err := templateUserData(ctx, c.Clients, res.names.LaunchTemplate)
	if err != nil {
		return nil, err
	}
	c.instances, err = newInstances(cfg, moto, c.Clients, res.names.Fleet, userData, logs, log)
	if err != nil {
		return nil, err
	}
	if c.lambdaLog, err = os.OpenFile(filepath.Join(logs, "scaler-lambda.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640); err != nil {
		return nil, err
	}
	lambdaLog := logging.JSON(c.lambdaLog)
	handler := lambdascaler.New(lambdascaler.Config{Tick: cfg.Tick, Window: cfg.Schedule - 5*time.Second, Fleet: res.names.Fleet},
		scaler.New(scaler.Config{Max: cfg.MaxWorkers, ScaleInDelay: cfg.ScaleInDelay}, res.requests,
			ec2fleet.New(c.Clients.EC2, res.names.Fleet, res.names.LaunchTemplate), lambdaLog),
		lambdaLog, c.lambdaLog)

	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	c.stop = stop
	go func() {
		defer close(c.done)
		instancesDone := make(chan struct{})
		go func() { c.instances.run(runCtx); close(instancesDone) }()
		schedule(runCtx, cfg.Schedule, handler)
		<-instancesDone
	}()
	return c, nil
}

// schedule stands in for the EventBridge rule rate(<period>): it invokes
// the handler with a scheduled-event payload every period, each invocation
// under a Lambda-style deadline of one period.
func schedule(ctx context.Context, period time.Duration, h *lambdascaler.Handler) {
	for next := time.Now(); ctx.Err() == nil; next = next.Add(period) {
		if wait := time.Until(next); wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		invocation, cancel := context.WithTimeout(ctx, period)
		h.Handle(invocation, awsevents.EventBridgeEvent{
			Version: "0", ID: strconv.FormatInt(next.UnixNano(), 36), DetailType: "Scheduled Event", Source: "aws.events",
			AccountID: "123456789012", Time: next.UTC().Truncate(time.Second), Region: motoserver.Region,
			Resources: []string{"arn:aws:events:" + motoserver.Region + ":123456789012:rule/surge-scaler"},
		})
		cancel()
	}
}

// RunningWorkers counts the app-tier instances moto reports running, as a
// grader polling the account would.
func (c *Cloud) RunningWorkers(ctx context.Context) (int, error) {
	in, err := ec2fleet.New(c.Clients.EC2, c.Names.Fleet, c.Names.LaunchTemplate).List(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, i := range in {
		if i.State == "running" {
			n++
		}
	}
	return n, nil
}

// BusyInstance returns the id of an emulated instance whose worker holds
// a request right now.
func (c *Cloud) BusyInstance() (string, bool) { return c.instances.busy() }

// Stop takes everything down: the scheduler, the instances, the web tier,
// moto.
func (c *Cloud) Stop(context.Context) error {
	var errs []error
	if c.stop != nil {
		c.stop()
		<-c.done
	}
	if c.instances != nil {
		c.instances.stopAll()
	}
	if c.web != nil {
		errs = append(errs, c.web.Stop())
	}
	if c.lambdaLog != nil {
		c.lambdaLog.Close()
	}
	c.Moto.Stop()
	return errors.Join(errs...)
}
