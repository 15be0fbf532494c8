// Command scaler is the Lambda function EventBridge invokes every minute
// to size the worker fleet. Configuration comes from the environment:
// SURGE_REQUEST_QUEUE_URL, SURGE_LAUNCH_TEMPLATE, SURGE_FLEET (the fleet
// tag), SURGE_MAX_WORKERS, SURGE_SUBNETS (comma-separated), and optionally
// SURGE_TICK, SURGE_WINDOW, SURGE_LAUNCH_ALLOWANCE, SURGE_SCALE_IN_DELAY,
// SURGE_BOOT_DEADLINE, SURGE_CAPACITY_BACKOFF and
// SURGE_CAPACITY_BACKOFF_MAX (see scaler.FromEnv).
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/surgeml/surge/internal/scaler"
)

func main() {
	h, err := scaler.FromEnv(context.Background(), os.Getenv, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "scaler:", err)
		os.Exit(1)
	}
	lambda.Start(h.Handle)
}
