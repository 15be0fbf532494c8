package lambdascaler

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/surgeml/surge/internal/awscfg"
	"github.com/surgeml/surge/internal/ec2fleet"
	"github.com/surgeml/surge/internal/envvar"
	"github.com/surgeml/surge/internal/logging"
	"github.com/surgeml/surge/internal/scaler"
	"github.com/surgeml/surge/internal/scaling"
	"github.com/surgeml/surge/internal/sqsqueue"
)

// FromEnv wires a handler from the Lambda's environment and the SDK's
// standard configuration. The same wiring serves the emulator, which calls
// Handle on its own schedule.
func FromEnv(ctx context.Context, metrics io.Writer) (*Handler, error) {
	queueURL, template, fleetName := os.Getenv("SURGE_REQUEST_QUEUE_URL"), os.Getenv("SURGE_LAUNCH_TEMPLATE"), os.Getenv("SURGE_FLEET")
	if queueURL == "" || template == "" || fleetName == "" {
		return nil, errors.New("SURGE_REQUEST_QUEUE_URL, SURGE_LAUNCH_TEMPLATE and SURGE_FLEET must be set")
	}
	max := envvar.Int("SURGE_MAX_WORKERS", scaling.DefaultMax)
	if max < 1 {
		return nil, fmt.Errorf("SURGE_MAX_WORKERS is %d; it must be at least 1", max)
	}
	c, err := awscfg.Load(ctx)
	if err != nil {
		return nil, err
	}
	log := logging.Stderr()
	var subnets []string
	if s := os.Getenv("SURGE_SUBNETS"); s != "" {
		subnets = strings.Split(s, ",")
	}
	s := scaler.New(scaler.Config{Max: max, ScaleInDelay: envvar.Duration("SURGE_SCALE_IN_DELAY", 2*time.Second)},
		sqsqueue.FromURL(c.SQS, queueURL), ec2fleet.New(c.EC2, fleetName, template, subnets...), log)
	return New(Config{
		Tick:   envvar.Duration("SURGE_TICK", 5*time.Second),
		Window: envvar.Duration("SURGE_WINDOW", 55*time.Second),
		Fleet:  fleetName,
	}, s, log.With("fleet", fleetName), metrics), nil
}
