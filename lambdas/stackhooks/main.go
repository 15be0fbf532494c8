// Command stackhooks is the Lambda behind the stack's lifecycle custom
// resource (see internal/stackhooks): Create and Update close the VPC's
// default security group; Delete stops the scaler, terminates the fleet
// and empties the buckets to delete. Configuration comes from the
// environment: SURGE_FLEET, SURGE_VPC_ID, SURGE_SCALER_FUNCTION,
// SURGE_SCALER_WINDOW, SURGE_EMPTY_BUCKETS and SURGE_POLL.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/aws/aws-lambda-go/cfn"
	"github.com/aws/aws-lambda-go/lambda"

	"github.com/surgeml/surge/internal/logging"
	"github.com/surgeml/surge/internal/stackhooks"
)

func main() {
	log := logging.Stderr()
	h, err := stackhooks.FromEnv(context.Background(), os.Getenv, log)
	if err != nil {
		// Still answer every request, FAILED with the reason: a function
		// that dies at start never answers, and CloudFormation would wait
		// for its timeout (an hour by default) before failing the stack.
		log.Error("stack hook misconfigured", "err", err)
		lambda.Start(cfn.LambdaWrap(func(context.Context, cfn.Event) (string, map[string]any, error) {
			return "", nil, fmt.Errorf("stack hook misconfigured: %w", err)
		}))
		return
	}
	lambda.Start(cfn.LambdaWrap(h.Handle))
}
