package stackhooks

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Config is what the hook acts on. Zero durations take the defaults in
// brackets.
type Config struct {
	Fleet          string        // the workers' fleet tag (surge:fleet) value
	VPCID          string        // the VPC whose default security group to close; "" skips it
	ScalerFunction string        // the scaler Lambda to stop on Delete; "" skips it
	ScalerWindow   time.Duration // the scaler's reconcile window (its SURGE_WINDOW): how long after the stop an invocation already running may still launch [60s]
	// LaunchSettle is how long after the scaler's window a launch may
	// still be coming into view: answered late, then listed by
	// DescribeInstances, which EC2 keeps only eventually consistent
	// [10s].
	LaunchSettle time.Duration
	EmptyBuckets []string      // buckets to empty on Delete
	Poll         time.Duration // between looks at the fleet on Delete [5s]
	Margin       time.Duration // answer this long before the invocation's deadline [10s]
	// RoleWait is how long Create and Update wait, calls refused, for the
	// hook's role to propagate through IAM [2m]: a new role's
	// permissions may take seconds to reach every endpoint.
	RoleWait time.Duration
}

// DefaultScalerWindow is the scaler's reconcile window (internal/scaler's
// DefaultWindow, the stack's SURGE_WINDOW): an invocation under way when
// the scaler is stopped launches nothing after its window's end, which is
// at most a window after the stop (it began before it).
const DefaultScalerWindow = 60 * time.Second

// maxRun bounds a Delete called without a deadline (the emulator may) at
// Lambda's own maximum timeout.
const maxRun = 15 * time.Minute

func (c *Config) defaults() {
	if c.ScalerWindow <= 0 {
		c.ScalerWindow = DefaultScalerWindow
	}
	if c.LaunchSettle <= 0 {
		c.LaunchSettle = 10 * time.Second
	}
	if c.Poll <= 0 {
		c.Poll = 5 * time.Second
	}
	if c.Margin <= 0 {
		c.Margin = 10 * time.Second
	}
	if c.RoleWait <= 0 {
		c.RoleWait = 2 * time.Minute
	}
}

// ConfigFromEnv reads the hook's settings from its function's environment:
// SURGE_FLEET (required), SURGE_VPC_ID, SURGE_SCALER_FUNCTION,
// SURGE_SCALER_WINDOW (a duration such as "60s": the scaler's
// SURGE_WINDOW), SURGE_EMPTY_BUCKETS
// (comma-separated), SURGE_POLL and SURGE_ROLE_WAIT (durations). getenv is os.Getenv in
// Lambda; the emulator passes the deployed function's environment.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	cfg := Config{
		Fleet:          strings.TrimSpace(getenv("SURGE_FLEET")),
		VPCID:          strings.TrimSpace(getenv("SURGE_VPC_ID")),
		ScalerFunction: strings.TrimSpace(getenv("SURGE_SCALER_FUNCTION")),
	}
	if cfg.Fleet == "" {
		return Config{}, errors.New("SURGE_FLEET must be set: it names the fleet whose instances Delete ends")
	}
	var err error
	if cfg.ScalerWindow, err = duration(getenv, "SURGE_SCALER_WINDOW"); err != nil {
		return Config{}, err
	}
	if cfg.Poll, err = duration(getenv, "SURGE_POLL"); err != nil {
		return Config{}, err
	}
	if cfg.RoleWait, err = duration(getenv, "SURGE_ROLE_WAIT"); err != nil {
		return Config{}, err
	}
	for _, b := range strings.Split(getenv("SURGE_EMPTY_BUCKETS"), ",") {
		if b = strings.TrimSpace(b); b != "" {
			cfg.EmptyBuckets = append(cfg.EmptyBuckets, b)
		}
	}
	cfg.defaults()
	return cfg, nil
}

// duration reads an optional positive duration; a malformed one is an
// error rather than a silent default, since it decides how long Delete
// waits for a scaler that may still launch.
func duration(getenv func(string) string, key string) (time.Duration, error) {
	s := strings.TrimSpace(getenv(key))
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s is %q; want a positive duration such as 60s", key, s)
	}
	return d, nil
}
