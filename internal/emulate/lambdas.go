package emulate

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/cfn"
	awsevents "github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambdacontext"
	sdk "github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/google/uuid"

	"github.com/surgeml/surge/internal/aws"
	"github.com/surgeml/surge/internal/config"
	"github.com/surgeml/surge/internal/scaler"
	"github.com/surgeml/surge/internal/stackhooks"
)

// functions stands in for AWS Lambda's runtime and for EventBridge's
// schedules: Lambda functions (Go, arm64) cannot run here, so the
// emulator runs their handlers in-process, chosen by the function's
// Handler (scaler, stackhooks), configured by the deployed function's
// environment, talking to the emulated endpoint as the function. As on
// Lambda, a function's execution environment stays warm between
// invocations: one handler per function, kept.
type functions struct {
	region   string
	endpoint string
	lambda   *lambda.Client
	events   *eventbridge.Client
	logs     string
	log      *slog.Logger

	mu       sync.Mutex
	scalers  map[string]*scaler.Handler // warm scaler handlers by function name
	outputs  map[string]io.Writer
	schedule map[string]context.CancelFunc // running schedules by rule ARN + target
}

// invocation is one Lambda function's configuration as deployed.
type invocation struct {
	name, handler string
	env           map[string]string
	timeout       time.Duration
}

func (f *functions) config(ctx context.Context, function string) (*invocation, error) {
	out, err := f.lambda.GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: &function})
	if err != nil {
		return nil, fmt.Errorf("reading function %s: %w", function, err)
	}
	inv := &invocation{name: sdk.ToString(out.FunctionName), handler: sdk.ToString(out.Handler), env: map[string]string{},
		timeout: time.Duration(max(1, sdk.ToInt32(out.Timeout))) * time.Second}
	if out.Environment != nil {
		maps.Copy(inv.env, out.Environment.Variables)
	}
	// What the Lambda runtime adds to every function's environment.
	inv.env["AWS_LAMBDA_FUNCTION_NAME"] = inv.name
	inv.env["AWS_REGION"] = f.region
	return inv, nil
}

// output is the function's log, where CloudWatch Logs would hold it.
func (f *functions) output(name string) io.Writer {
	f.mu.Lock()
	defer f.mu.Unlock()
	if w, ok := f.outputs[name]; ok {
		return w
	}
	file, err := os.OpenFile(filepath.Join(f.logs, "lambda-"+name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return io.Discard
	}
	f.outputs[name] = file
	return file
}

func (f *functions) awsOptions(function string) []func(*awsconfig.LoadOptions) error {
	return aws.Endpoint(f.endpoint, f.region, "lambda-"+function)
}

// Invoke runs a function with a payload, asynchronously as CloudFormation
// invokes custom resources: the function answers through the event's
// ResponseURL.
func (f *functions) Invoke(ctx context.Context, region, function string, payload []byte) error {
	inv, err := f.config(ctx, function)
	if err != nil {
		return err
	}
	if inv.handler != "stackhooks" {
		return fmt.Errorf("function %s (handler %q) is not one the emulator can run as a custom resource", inv.name, inv.handler)
	}
	var ev cfn.Event
	if err := json.Unmarshal(payload, &ev); err != nil {
		return fmt.Errorf("function %s: payload: %w", inv.name, err)
	}
	out := f.output(inv.name)
	go func() {
		// Lambda gives the function its configured timeout; the stack's
		// hook has ten minutes.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Minute)
		defer cancel()
		ctx = lambdacontext.NewContext(ctx, &lambdacontext.LambdaContext{AwsRequestID: uuid.NewString()})
		handle := stackhooks.Handler(ctx, mapEnv(inv.env), config.JSONLogger(out), f.awsOptions(inv.name)...)
		if _, err := cfn.LambdaWrap(handle)(ctx, ev); err != nil {
			f.log.Error("stack hooks", "function", inv.name, "err", err)
		}
	}()
	return nil
}

func mapEnv(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

var rateExpr = regexp.MustCompile(`^rate\((\d+) (minute|minutes|hour|hours)\)$`)

// follow starts a schedule for every enabled rate rule that targets a
// function, and stops those whose rule is gone (the stack was destroyed),
// until ctx ends.
func (f *functions) follow(ctx context.Context) {
	for {
		if err := f.syncSchedules(ctx); err != nil && ctx.Err() == nil {
			f.log.Error("following EventBridge rules", "err", err)
		}
		select {
		case <-ctx.Done():
			f.mu.Lock()
			for _, stop := range f.schedule {
				stop()
			}
			f.mu.Unlock()
			return
		case <-time.After(2 * time.Second):
		}
	}
}

func (f *functions) syncSchedules(ctx context.Context) error {
	rules, err := f.events.ListRules(ctx, &eventbridge.ListRulesInput{})
	if err != nil {
		return err
	}
	want := map[string]func(context.Context){}
	for _, r := range rules.Rules {
		m := rateExpr.FindStringSubmatch(sdk.ToString(r.ScheduleExpression))
		if m == nil || r.State != "ENABLED" {
			continue
		}
		n, _ := strconv.Atoi(m[1])
		period := time.Duration(n) * time.Minute
		if strings.HasPrefix(m[2], "hour") {
			period = time.Duration(n) * time.Hour
		}
		targets, err := f.events.ListTargetsByRule(ctx, &eventbridge.ListTargetsByRuleInput{Rule: r.Name})
		if err != nil {
			return err
		}
		for _, t := range targets.Targets {
			arn, rule := sdk.ToString(t.Arn), sdk.ToString(r.Arn)
			if !strings.Contains(arn, ":function:") {
				continue
			}
			want[rule+" "+arn] = func(schedule context.Context) { f.run(schedule, ctx, rule, arn, period) }
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for key, stop := range f.schedule {
		if _, ok := want[key]; !ok {
			stop()
			delete(f.schedule, key)
		}
	}
	for key, run := range want {
		if _, ok := f.schedule[key]; !ok {
			sctx, stop := context.WithCancel(ctx)
			f.schedule[key] = stop
			go run(sctx)
		}
	}
	return nil
}

// run invokes function with EventBridge's scheduled-event payload every
// period, until schedule ends (its rule is gone). Each invocation runs
// under its function's timeout within invocations, which ends only with
// the emulator: as on Lambda, an invocation under way runs on after its
// rule, or its function, is deleted. A function whose reserved
// concurrency is 0 is throttled: not invoked.
func (f *functions) run(schedule, invocations context.Context, rule, function string, period time.Duration) {
	f.log.Info("schedule started", "rule", rule, "function", function, "every", period)
	for next := time.Now().Truncate(time.Second); schedule.Err() == nil; next = next.Add(period) {
		if wait := time.Until(next); wait > 0 {
			select {
			case <-schedule.Done():
				return
			case <-time.After(wait):
			}
		}
		if c, err := f.lambda.GetFunctionConcurrency(schedule, &lambda.GetFunctionConcurrencyInput{FunctionName: &function}); err == nil &&
			c.ReservedConcurrentExecutions != nil && *c.ReservedConcurrentExecutions == 0 {
			f.log.Info("function throttled (reserved concurrency 0)", "function", function)
			continue
		}
		go f.scheduled(invocations, rule, function, next)
	}
}

func (f *functions) scheduled(ctx context.Context, rule, function string, at time.Time) {
	inv, err := f.config(ctx, function)
	if err != nil {
		if ctx.Err() == nil {
			f.log.Error("scheduled invocation", "err", err)
		}
		return
	}
	if inv.handler != "scaler" {
		f.log.Error("scheduled function is not one the emulator can run", "function", inv.name, "handler", inv.handler)
		return
	}
	f.mu.Lock()
	h, ok := f.scalers[inv.name]
	f.mu.Unlock()
	if !ok {
		if h, err = scaler.FromEnv(ctx, mapEnv(inv.env), f.output(inv.name), f.awsOptions(inv.name)...); err != nil {
			f.log.Error("scaler", "function", inv.name, "err", err)
			return
		}
		f.mu.Lock()
		f.scalers[inv.name] = h
		f.mu.Unlock()
	}
	account, region := "123456789012", f.region
	if parts := strings.Split(rule, ":"); len(parts) > 4 {
		region, account = parts[3], parts[4]
	}
	invocation, cancel := context.WithTimeout(ctx, inv.timeout)
	defer cancel()
	h.Handle(invocation, awsevents.EventBridgeEvent{
		Version: "0", ID: uuid.NewString(), DetailType: "Scheduled Event", Source: "aws.events",
		AccountID: account, Time: at.UTC(), Region: region, Resources: []string{rule}, Detail: json.RawMessage("{}"),
	})
}
