// Package stackhooks is the stack's lifecycle hook, one CloudFormation
// custom resource backed by a Go Lambda:
//
//   - Create and Update close the VPC's default security group (no ingress,
//     no egress rules), as Security Hub's EC2.2 control expects, waiting
//     (within a bound) for the hook's new role to propagate through IAM.
//   - Delete stops the scaler, ends every instance of the fleet (the scaler
//     launched them, not the stack, so CloudFormation does not know them and
//     cannot delete their security group while they run), and empties the
//     buckets the deployment chose to delete with the stack.
//
// One Go function does both jobs rather than CDK's Node.js custom
// resources, because the emulator runs the stack's Lambda handlers
// in-process and cannot run Node.js bundles.
//
// The hook ignores its ResourceProperties (other than ServiceToken) and
// takes its settings from its function's environment: the emulator's
// CloudFormation stand-in resolves only simple intrinsics in resource
// properties, while a function's environment is resolved by the stack
// itself, so the environment is the one place both read alike.
package stackhooks

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-lambda-go/cfn"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/surgeml/surge/internal/aws"
)

// Hook handles the custom resource's requests.
type Hook struct {
	cfg    Config
	ec2    *ec2.Client
	lambda *lambda.Client
	s3     *s3.Client
	log    *slog.Logger
	now    func() time.Time // measures the scaler's window; tests move it on by hand
}

// New returns a hook acting through c's clients.
func New(cfg Config, c *aws.Clients, log *slog.Logger) *Hook {
	cfg.defaults()
	return &Hook{
		cfg:    cfg,
		ec2:    c.EC2,
		lambda: lambda.NewFromConfig(c.Config),
		s3:     c.S3,
		log:    log.With("fleet", cfg.Fleet),
		now:    time.Now,
	}
}

// FromEnv configures a hook from getenv (see ConfigFromEnv) and the SDK's
// standard configuration, which opts override (the emulator points them
// at its endpoint).
func FromEnv(ctx context.Context, getenv func(string) string, log *slog.Logger, opts ...func(*config.LoadOptions) error) (*Hook, error) {
	cfg, err := ConfigFromEnv(getenv)
	if err != nil {
		return nil, err
	}
	c, err := aws.LoadClients(ctx, opts...)
	if err != nil {
		return nil, err
	}
	return New(cfg, c, log), nil
}

// Handler is the custom resource's handler, for cfn.LambdaWrap: the
// hook's, or, when its configuration is wrong, one that answers every
// request FAILED with the reason. A function that dies at start never
// answers, and CloudFormation would wait for its timeout (an hour by
// default) before failing the stack.
func Handler(ctx context.Context, getenv func(string) string, log *slog.Logger, opts ...func(*config.LoadOptions) error) cfn.CustomResourceFunction {
	h, err := FromEnv(ctx, getenv, log, opts...)
	if err != nil {
		log.Error("stack hook misconfigured", "err", err)
		return func(context.Context, cfn.Event) (string, map[string]any, error) {
			return "", nil, fmt.Errorf("stack hook misconfigured: %w", err)
		}
	}
	return h.Handle
}

// PhysicalID is the resource's physical id: the same for every request,
// so CloudFormation never takes an Update for a replacement and sends the
// old resource a Delete.
func (h *Hook) PhysicalID() string { return "surge-hooks-" + h.cfg.Fleet }

// maxReason keeps the answer well inside CloudFormation's 4096-byte limit
// on a response body.
const maxReason = 1500

// Handle is a cfn.CustomResourceFunction: wrap it in cfn.LambdaWrap, which
// sends CloudFormation the answer (SUCCESS, or FAILED with the error as the
// reason).
func (h *Hook) Handle(ctx context.Context, ev cfn.Event) (physicalID string, data map[string]any, err error) {
	// Answer with the id CloudFormation already has, so no response can
	// turn into a replacement.
	physicalID = ev.PhysicalResourceID
	if ev.RequestType == cfn.RequestCreate || physicalID == "" {
		physicalID = h.PhysicalID()
	}
	log := h.log.With("request", string(ev.RequestType), "stack", ev.StackID, "resource", ev.LogicalResourceID, "requestId", ev.RequestID)
	start := time.Now()
	log.Info("stack hook request")
	switch ev.RequestType {
	case cfn.RequestCreate, cfn.RequestUpdate:
		err = h.whileRolePropagates(ctx, log, func(ctx context.Context) error { return h.closeDefaultGroup(ctx, log) })
	case cfn.RequestDelete:
		err = h.teardown(ctx, log)
	default:
		err = fmt.Errorf("unknown request type %q: this resource handles Create, Update and Delete", ev.RequestType)
	}
	took := time.Since(start)
	if err != nil {
		log.Error("stack hook failed", "err", err, "took", took)
		if msg := err.Error(); len(msg) > maxReason {
			err = fmt.Errorf("%s… (truncated; see the function's log)", msg[:maxReason])
		}
		return physicalID, nil, err
	}
	log.Info("stack hook done", "took", took)
	return physicalID, nil, nil
}
