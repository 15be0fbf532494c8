package scaler

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/lambda"

	"github.com/surgeml/surge/internal/aws"
)

// Concurrency reads a function's reserved concurrency; *lambda.Client is
// one.
type Concurrency interface {
	GetFunctionConcurrency(ctx context.Context, in *lambda.GetFunctionConcurrencyInput, opts ...func(*lambda.Options)) (*lambda.GetFunctionConcurrencyOutput, error)
}

// stoppable is the fleet as a scaler that can be stopped sees it. The
// stack's destroy hook stops the scaler by setting its reserved
// concurrency to 0, which keeps new invocations from starting but not one
// already reconciling; so before each launch the scaler asks whether it
// has been stopped, and if so launches nothing. The hook then needs to
// wait only for a launch already under way, not a whole invocation.
type stoppable struct {
	Fleet
	lambda  Concurrency
	self    string // this function's name
	log     *slog.Logger
	stopped atomic.Bool
}

func (s *stoppable) Launch(ctx context.Context, names []string) error {
	if s.halted(ctx, names) {
		return nil
	}
	return s.Fleet.Launch(ctx, names)
}

// halted reports whether the scaler has been stopped, saying so once.
func (s *stoppable) halted(ctx context.Context, wanted []string) bool {
	out, err := s.lambda.GetFunctionConcurrency(ctx, &lambda.GetFunctionConcurrencyInput{FunctionName: &s.self})
	switch {
	case err != nil:
		// Launching anyway keeps the service up if the check itself
		// fails; the destroy hook ends what it finds either way.
		s.log.Warn("could not tell whether the scaler was stopped; launching", "err", err)
	case out.ReservedConcurrentExecutions != nil && *out.ReservedConcurrentExecutions == 0:
		if !s.stopped.Swap(true) {
			s.log.Warn("the scaler is stopped (reserved concurrency 0, as the stack's destroy sets it): launching nothing", "wanted", wanted)
		}
		return true
	}
	return false
}

// stoppablePool is the warm pool as a scaler that can be stopped keeps
// it: stopped, it launches no members either.
type stoppablePool struct {
	*stoppable
	pool Pool
}

func (s *stoppablePool) MaintainPool(ctx context.Context, bootDeadline time.Duration) (aws.PoolReport, error) {
	if s.halted(ctx, []string{"warm pool"}) {
		return aws.PoolReport{}, nil
	}
	return s.pool.MaintainPool(ctx, bootDeadline)
}
