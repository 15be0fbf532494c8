package scaler

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
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
// Required: SURGE_REQUEST_QUEUE_URL, SURGE_LAUNCH_TEMPLATE, SURGE_FLEET.
// AWS_LAMBDA_FUNCTION_NAME, which Lambda sets, makes the scaler check
// before each launch that it has not been stopped (see stoppable).
// Optional, [default]: SURGE_MAX_WORKERS [events.DefaultMaxWorkers], SURGE_SUBNETS
// (comma-separated), SURGE_TICK [5s], SURGE_WINDOW [55s],
// SURGE_SCALE_IN_DELAY [2s], SURGE_BOOT_DEADLINE [5m; 0 never replaces],
// SURGE_CAPACITY_BACKOFF [30s], SURGE_CAPACITY_BACKOFF_MAX [5m]. A
// malformed value is an error, not a silent default.
func FromEnv(ctx context.Context, getenv func(string) string, out io.Writer, awsOptions ...func(*awsconfig.LoadOptions) error) (*Handler, error) {
	queueURL, template, fleetName := getenv("SURGE_REQUEST_QUEUE_URL"), getenv("SURGE_LAUNCH_TEMPLATE"), getenv("SURGE_FLEET")
	if queueURL == "" || template == "" || fleetName == "" {
		return nil, errors.New("SURGE_REQUEST_QUEUE_URL, SURGE_LAUNCH_TEMPLATE and SURGE_FLEET must be set")
	}
	env := settings{getenv: getenv}
	maxWorkers := env.int("SURGE_MAX_WORKERS", events.DefaultMaxWorkers)
	scfg := Config{
		Max:                maxWorkers,
		ScaleInDelay:       env.duration("SURGE_SCALE_IN_DELAY", 2*time.Second),
		BootDeadline:       env.duration("SURGE_BOOT_DEADLINE", 5*time.Minute),
		CapacityBackoff:    env.duration("SURGE_CAPACITY_BACKOFF", 30*time.Second),
		CapacityBackoffMax: env.duration("SURGE_CAPACITY_BACKOFF_MAX", 5*time.Minute),
	}
	hcfg := LambdaConfig{
		Tick:   env.duration("SURGE_TICK", 5*time.Second),
		Window: env.duration("SURGE_WINDOW", 55*time.Second),
		Fleet:  fleetName,
	}
	if env.err != nil {
		return nil, env.err
	}
	if maxWorkers < 1 {
		return nil, fmt.Errorf("SURGE_MAX_WORKERS is %d; it must be at least 1", maxWorkers)
	}
	c, err := aws.LoadClients(ctx, awsOptions...)
	if err != nil {
		return nil, err
	}
	var subnets []string
	if s := getenv("SURGE_SUBNETS"); s != "" {
		subnets = strings.Split(s, ",")
	}
	log := config.JSONLogger(out)
	// One scaler for the life of the execution environment: its state
	// (scale-in history, a launch-ceiling episode) carries over from one
	// invocation to the next while Lambda keeps the environment warm. A
	// cold start begins afresh, so it may announce an episode that was
	// already going on.
	var workers Fleet = aws.NewFleet(c.EC2, fleetName, template, subnets...)
	if self := getenv("AWS_LAMBDA_FUNCTION_NAME"); self != "" {
		workers = &stoppable{Fleet: workers, lambda: lambda.NewFromConfig(c.Config), self: self, log: log}
	}
	s := New(scfg, aws.QueueFromURL(c.SQS, queueURL), workers, log)
	return NewHandler(hcfg, s, log.With("fleet", fleetName), out), nil
}

// settings reads typed values, keeping the first malformed one's error.
type settings struct {
	getenv func(string) string
	err    error
}

func (s *settings) int(key string, def int) int {
	v := s.getenv(key)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		s.err = cmp.Or(s.err, fmt.Errorf("%s=%q is not a whole number", key, v))
		return def
	}
	return n
}

func (s *settings) duration(key string, def time.Duration) time.Duration {
	v := s.getenv(key)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		s.err = cmp.Or(s.err, fmt.Errorf("%s=%q is not a duration such as 30s or 5m", key, v))
		return def
	}
	return d
}
