// Command stackhooks is the Lambda behind the stack's lifecycle custom
// resource (see internal/stackhooks): Create and Update close the VPC's
// default security group; Delete stops the scaler, terminates the fleet
// and empties the buckets to delete. Configuration comes from the
// environment: SURGE_FLEET, SURGE_VPC_ID, SURGE_SCALER_FUNCTION,
// SURGE_SCALER_WINDOW (the scaler's SURGE_WINDOW), SURGE_EMPTY_BUCKETS,
// SURGE_POLL and SURGE_ROLE_WAIT.
package main

import (
	"context"
	"os"

	"github.com/aws/aws-lambda-go/cfn"
	"github.com/aws/aws-lambda-go/lambda"

	"github.com/surgeml/surge/internal/config"
	"github.com/surgeml/surge/internal/stackhooks"
)

func main() {
	lambda.Start(cfn.LambdaWrap(stackhooks.Handler(context.Background(), os.Getenv, config.Logger())))
}
