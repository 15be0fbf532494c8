package scaler

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/lambda"

	"github.com/surgeml/surge/events"
	"github.com/surgeml/surge/internal/aws"
	"github.com/surgeml/surge/internal/config"
)

// FromEnv wires a handler from a function's environment, read through
// getenv (os.Getenv in Lambda; the deployed function's variables when the
// emulator runs the handler in-process), and the SDK's standard
// configuration with awsOptions on top. Log lines and embedded metrics
// both go to out, as they both go to the function's log stream on
// Lambda; the log level is the process's $SURGE_LOG_LEVEL.
//
// The settings follow the binaries' scheme (config.Parse), with no
// command line: SURGE_REQUEST_QUEUE_URL, SURGE_LAUNCH_TEMPLATE and
// SURGE_FLEET are required; settingsFrom has the rest and their defaults.
// AWS_LAMBDA_FUNCTION_NAME, which Lambda sets, makes the scaler check
// before each launch that it has not been stopped (see stopCheck). A
// malformed value is an error naming its variable, not a silent default.
func FromEnv(ctx context.Context, getenv func(string) string, out io.Writer, awsOptions ...func(*awsconfig.LoadOptions) error) (*Handler, error) {
	set, err := settingsFrom(getenv)
	if err != nil {
		return nil, err
	}
	c, err := aws.LoadClients(ctx, awsOptions...)
	if err != nil {
		return nil, err
	}
	log := config.JSONLogger(out)
	// One scaler for the life of the execution environment: its state
	// (scale-in history, a launch-ceiling episode) carries over from one
	// invocation to the next while Lambda keeps the environment warm. A
	// cold start begins afresh, so it may announce an episode that was
	// already going on.
	fleet := aws.NewFleet(c.EC2, set.lambda.Fleet, set.template, set.subnets...).WithPool(set.poolSize)
	if self := getenv("AWS_LAMBDA_FUNCTION_NAME"); self != "" {
		st := &stopCheck{lambda: lambda.NewFromConfig(c.Config), self: self, log: log}
		fleet.WithLaunchCheck(st.check)
	}
	s := New(set.scaler, aws.QueueFromURL(c.SQS, set.queueURL), fleet, log)
	h := NewHandler(set.lambda, s, log.With("fleet", set.lambda.Fleet), out)
	// With no pool, too: a pool made smaller, down to none, sheds its
	// members while the fleet is idle.
	h.WithPool(fleet, set.scaler.BootDeadline)
	if set.responseQueueURL != "" {
		shared := aws.QueueFromURL(c.SQS, set.responseQueueURL)
		names, err := namesOfResponseQueue(shared.Name())
		if err != nil {
			return nil, err
		}
		h.WithSweeper(NewSweeper(names, aws.NewReplyQueues(c.SQS, names), shared, aws.NewWebInstances(c.EC2), set.replyQueueGrace, log))
	}
	return h, nil
}

// namesOfResponseQueue finds the deployment's names from its shared
// response queue's, <prefix>-resp-queue.
func namesOfResponseQueue(queue string) (events.Names, error) {
	prefix, ok := strings.CutSuffix(queue, "-resp-queue")
	if !ok || prefix == "" {
		return events.Names{}, fmt.Errorf("SURGE_RESPONSE_QUEUE_URL: queue %q is not named <prefix>-resp-queue", queue)
	}
	return events.NamesFor(prefix), nil
}

// settings are a scaler function's, from its environment.
type settings struct {
	queueURL, template string
	// responseQueueURL, when set, has the scaler sweep the web instances'
	// reply queues into it (a deployment with several web instances).
	responseQueueURL string
	replyQueueGrace  time.Duration
	subnets          []string
	poolSize         int
	scaler           Config
	lambda           LambdaConfig
}

// settingsFrom reads the variables of a flag set that no command line
// fills: each flag -x-y is SURGE_X_Y.
func settingsFrom(getenv func(string) string) (settings, error) {
	var s settings
	fs := flag.NewFlagSet("scaler", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&s.queueURL, "request-queue-url", "", "the request queue, whose backlog sizes the fleet")
	fs.StringVar(&s.responseQueueURL, "response-queue-url", "", "the shared response queue, into which the reply queues of web instances that are gone are drained (empty: no sweeping)")
	fs.DurationVar(&s.replyQueueGrace, "reply-queue-grace", DefaultReplyQueueGrace, "how long a gone web instance's reply queue must stay empty before it is deleted")
	fs.StringVar(&s.template, "launch-template", "", "the workers' launch template")
	fs.StringVar(&s.lambda.Fleet, "fleet", "", "the fleet's tag value")
	subnets := fs.String("subnets", "", "comma-separated subnets to launch into")
	fs.IntVar(&s.scaler.Max, "max-workers", events.DefaultMaxWorkers, "the fleet cap")
	fs.IntVar(&s.scaler.Min, "min-workers", 0, "workers kept running with no backlog")
	fs.IntVar(&s.poolSize, "pool-size", 0, "how many booted workers to keep stopped, to start in place of launches (0: none)")
	fs.DurationVar(&s.lambda.Tick, "tick", 5*time.Second, "how often one invocation sizes the fleet")
	fs.DurationVar(&s.lambda.Window, "window", DefaultWindow, "how long one invocation reconciles from its scheduled time (the schedule's period)")
	fs.DurationVar(&s.lambda.LaunchAllowance, "launch-allowance", DefaultLaunchAllowance, "start no launch this close to the window's end: EC2 may take this long to answer")
	fs.DurationVar(&s.scaler.ScaleInDelay, "scale-in-delay", 2*time.Second, "how long the backlog must call for fewer workers before any are drained")
	fs.DurationVar(&s.scaler.BootDeadline, "boot-deadline", 5*time.Minute, "replace an instance not ready this long after launch (0: never)")
	fs.DurationVar(&s.scaler.CapacityBackoff, "capacity-backoff", 30*time.Second, "first wait after a capacity error")
	fs.DurationVar(&s.scaler.CapacityBackoffMax, "capacity-backoff-max", 5*time.Minute, "longest wait after capacity errors")
	if err := config.Parse(fs, nil, getenv); err != nil {
		return settings{}, err
	}
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if g, ok := f.Value.(flag.Getter); ok {
			if d, ok := g.Get().(time.Duration); ok && d < 0 {
				errs = append(errs, fmt.Errorf("%s=%q: a duration must not be negative", config.EnvName(f.Name), f.Value))
			}
		}
	})
	if s.queueURL == "" || s.template == "" || s.lambda.Fleet == "" {
		errs = append(errs, errors.New("SURGE_REQUEST_QUEUE_URL, SURGE_LAUNCH_TEMPLATE and SURGE_FLEET must be set"))
	}
	if s.scaler.Max < 1 {
		errs = append(errs, fmt.Errorf("SURGE_MAX_WORKERS=%d: the cap must be at least 1", s.scaler.Max))
	}
	if s.scaler.Min < 0 || s.scaler.Min > s.scaler.Max {
		errs = append(errs, fmt.Errorf("SURGE_MIN_WORKERS=%d: must be between 0 and the cap, %d", s.scaler.Min, s.scaler.Max))
	}
	if s.poolSize < 0 {
		errs = append(errs, fmt.Errorf("SURGE_POOL_SIZE=%d: the pool size must not be negative", s.poolSize))
	}
	if *subnets != "" {
		s.subnets = strings.Split(*subnets, ",")
	}
	return s, errors.Join(errs...)
}
