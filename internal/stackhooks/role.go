package stackhooks

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/surgeml/surge/events"
)

// deniedCodes are how AWS services refuse a call its role does not
// allow: EC2, S3 (and most Query services), and the JSON services such as
// Lambda.
var deniedCodes = map[string]bool{
	"UnauthorizedOperation": true,
	"AccessDenied":          true,
	"AccessDeniedException": true,
}

// whileRolePropagates runs do, and again with backoff while its calls are
// refused, for up to RoleWait from the start (and not past Margin before
// the invocation's deadline). On a first deploy the hook runs moments
// after CloudFormation made its role, whose permissions take seconds to
// reach every endpoint; until then its calls are refused as if the role
// lacked them, and failing would roll the whole first deploy back.
// Refused past the bound, the role most likely does lack a permission:
// the error says so.
// https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_general.html#troubleshoot_general_eventual-consistency
func (h *Hook) whileRolePropagates(ctx context.Context, log *slog.Logger, do func(context.Context) error) error {
	start := time.Now()
	giveUp := start.Add(h.cfg.RoleWait)
	if dl, ok := ctx.Deadline(); ok && dl.Add(-h.cfg.Margin).Before(giveUp) {
		giveUp = dl.Add(-h.cfg.Margin)
	}
	backoff := events.Backoff{Min: time.Second, Max: 10 * time.Second}
	for {
		err := do(ctx)
		if err == nil || !deniedCodes[errorKind(err)] || ctx.Err() != nil {
			return err
		}
		wait := min(backoff.Failure(), time.Until(giveUp))
		if wait <= 0 {
			return fmt.Errorf("still refused after waiting %v for the hook's role to propagate through IAM; does the role lack the permission? %w",
				time.Since(start).Round(time.Second), err)
		}
		log.Info("refused: waiting for the hook's role to propagate through IAM", "code", errorKind(err), "err", err,
			"waited", time.Since(start).Round(time.Millisecond), "retryIn", wait)
		events.Sleep(ctx, wait)
	}
}
