package scaler

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"

	"github.com/aws/aws-sdk-go-v2/service/lambda"
	lambdatypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"
)

// Concurrency reads a function's reserved concurrency; *lambda.Client is
// one.
type Concurrency interface {
	GetFunctionConcurrency(ctx context.Context, in *lambda.GetFunctionConcurrencyInput, opts ...func(*lambda.Options)) (*lambda.GetFunctionConcurrencyOutput, error)
}

// errStopped is why a stopped scaler's launch stops.
var errStopped = errors.New("the scaler is stopped (reserved concurrency 0, as the stack's destroy sets it)")

// stopCheck tells the fleet whether a scaler that can be stopped may
// launch another instance. The stack's destroy hook stops the scaler by
// setting its reserved concurrency to 0, which keeps new invocations from
// starting but not one already reconciling; so before every single
// launch (not once per decision, which may launch many, each taking
// seconds) the scaler asks whether it has been stopped, and if so
// launches nothing more. Once the hook has stopped it, only the launch
// already under way can still add an instance.
type stopCheck struct {
	lambda  Concurrency
	self    string // this function's name
	log     *slog.Logger
	stopped atomic.Bool // said so already
}

// check is the fleet's launch check (aws.Fleet.WithLaunchCheck): nil while
// the scaler may launch.
func (s *stopCheck) check(ctx context.Context) error {
	out, err := s.lambda.GetFunctionConcurrency(ctx, &lambda.GetFunctionConcurrencyInput{FunctionName: &s.self})
	var gone *lambdatypes.ResourceNotFoundException
	switch {
	case errors.As(err, &gone):
		// The function itself is deleted: its stack is being destroyed.
		return s.halt("the scaler's function is gone")
	case err != nil:
		// Launching anyway keeps the service up if the check itself
		// fails; the destroy hook ends what it finds either way.
		s.log.Warn("could not tell whether the scaler was stopped; launching", "err", err)
	case out.ReservedConcurrentExecutions != nil && *out.ReservedConcurrentExecutions == 0:
		return s.halt("reserved concurrency 0")
	default:
		s.stopped.Store(false) // started again: a later stop is news
	}
	return nil
}

// halt says once per stop that launching has stopped.
func (s *stopCheck) halt(why string) error {
	if !s.stopped.Swap(true) {
		s.log.Warn("the scaler is stopped: launching nothing more", "why", why)
	}
	return errStopped
}
