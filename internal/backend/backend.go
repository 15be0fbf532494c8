// Package backend opens the queues, buckets, results table and fleet a
// tier runs on, embedded or on AWS, by the names docs/protocol.md gives
// them, and registers the flags that choose them. It is the one place that knows every
// implementation; the tiers see only the interfaces they declare.
package backend

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"path/filepath"
	"time"

	"github.com/surgeml/surge/events"
	"github.com/surgeml/surge/internal/aws"
	"github.com/surgeml/surge/internal/embedded"
)

// requestHold is how long a received request stays hidden before its
// worker extends it (see aws.Queue.HoldReceived).
const requestHold = 5 * time.Second

// Config selects and configures the backends.
type Config struct {
	Kind   string // "local" or "aws"
	Prefix string
	// DataDir holds everything of the local backend: queues/, buckets/,
	// tables/ and fleet/.
	DataDir string
	// Visibility and MaxReceives configure the request queue. SQS queues
	// carry their own; these must match them.
	Visibility  time.Duration
	MaxReceives int
	// InputBucket and OutputBucket name the AWS buckets when they are not
	// docs/protocol.md's <prefix>-in-bucket and <prefix>-out-bucket: a
	// deployment makes globally unique names unless told otherwise.
	InputBucket, OutputBucket string
	// Table names the results table when it is not <prefix>-dynamoDB.
	Table string
	// DeadLetters opens the request queue's dead-letter queue too (the
	// web tier counts it); workers have no business with it, and on AWS
	// no permission to find it.
	DeadLetters bool
	// Latency delays every queue, bucket and table call by a cloud's round
	// trip (zero: none), for measuring with AWS's timings on a fast backend.
	Latency Latency
}

// Backends are a tier's queues and buckets.
type Backends struct {
	Requests, Responses events.Queue
	// RequestDeadLetters holds requests delivered MaxReceives times.
	RequestDeadLetters events.Queue
	Inputs, Outputs    events.Store
	// Table is the results table, and TableName its name.
	Table     events.Table
	TableName string
	// Fleet shows the workers (read-only).
	Fleet interface {
		List(ctx context.Context) ([]events.Instance, error)
	}
	// Replies are the web instances' reply queues: created by each web
	// instance run with an id, answered to by workers, swept by the
	// scaler. WebTiers tells which of those instances are still there.
	Replies  events.ReplyQueues
	WebTiers interface {
		Alive(ctx context.Context, ids []string) (map[string]bool, error)
	}
	// Changed, when set, returns a channel closed on the next change to the
	// request queue, so a scaler can react before its next tick.
	Changed func() <-chan struct{}
	close   []func() error
}

// Close releases the backends.
func (b *Backends) Close() error {
	var errs []error
	for _, c := range b.close {
		errs = append(errs, c())
	}
	return errors.Join(errs...)
}

// Open opens the configured backends. The results table is opened but not
// checked: it is a cache, and the tiers work (and say so) without it.
func Open(ctx context.Context, cfg Config) (*Backends, error) {
	var b *Backends
	var err error
	switch cfg.Kind {
	case "", "local":
		b, err = openLocal(ctx, cfg)
	case "aws":
		b, err = openAWS(ctx, cfg)
	default:
		return nil, fmt.Errorf("unknown backend %q (want local or aws)", cfg.Kind)
	}
	if err != nil {
		return nil, err
	}
	cfg.Latency.apply(b)
	return b, nil
}

// FleetDir is where the local fleet keeps its state.
func FleetDir(dataDir string) string { return filepath.Join(dataDir, "fleet") }

func openLocal(ctx context.Context, cfg Config) (*Backends, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("local backend: no data directory")
	}
	names := events.NamesFor(cfg.Prefix)
	qdir := filepath.Join(cfg.DataDir, "queues")
	b := &Backends{}
	req, err := embedded.OpenQueue(ctx, qdir, names.RequestQueue, embedded.QueueOptions{Visibility: cfg.Visibility, MaxReceives: cfg.MaxReceives})
	if err != nil {
		return nil, err
	}
	b.close = append(b.close, req.Close)
	// Results are consumed by one web tier and never retried, so the
	// defaults suit them.
	resp, err := embedded.OpenQueue(ctx, qdir, names.ResponseQueue, embedded.QueueOptions{})
	if err != nil {
		b.Close()
		return nil, err
	}
	b.close = append(b.close, resp.Close)
	in, err := embedded.OpenBucket(filepath.Join(cfg.DataDir, "buckets", names.InputBucket))
	if err != nil {
		b.Close()
		return nil, err
	}
	out, err := embedded.OpenBucket(filepath.Join(cfg.DataDir, "buckets", names.OutputBucket))
	if err != nil {
		b.Close()
		return nil, err
	}
	table, err := embedded.OpenTable(ctx, filepath.Join(cfg.DataDir, "tables"), names.Table)
	if err != nil {
		b.Close()
		return nil, err
	}
	b.close = append(b.close, table.Close)
	// The name, not the path: /status shows it to anyone (the log has the
	// path).
	b.Table, b.TableName = table, names.Table
	b.Requests, b.Responses, b.RequestDeadLetters = req, resp, req.DeadLetters()
	b.Inputs, b.Outputs = in, out
	b.Fleet = embedded.NewFleetReader(FleetDir(cfg.DataDir))
	replies := embedded.NewReplyQueues(qdir, names)
	b.close = append(b.close, replies.Close)
	b.Replies, b.WebTiers = replies, embedded.WebTiers{Dir: cfg.DataDir}
	b.Changed = req.Changed
	return b, nil
}

// openAWS finds the queues, buckets and fleet the CDK stack (or the
// emulator) made for the prefix, with the SDK's standard configuration.
func openAWS(ctx context.Context, cfg Config) (*Backends, error) {
	c, err := aws.LoadClients(ctx)
	if err != nil {
		return nil, err
	}
	names := events.NamesFor(cfg.Prefix)
	if cfg.InputBucket != "" {
		names.InputBucket = cfg.InputBucket
	}
	if cfg.OutputBucket != "" {
		names.OutputBucket = cfg.OutputBucket
	}
	if cfg.Table != "" {
		names.Table = cfg.Table
	}
	b := &Backends{
		Table:     aws.NewTable(c.Dynamo, names.Table),
		TableName: names.Table,
		Inputs:    aws.NewBucket(c.S3, names.InputBucket),
		Outputs:   aws.NewBucket(c.S3, names.OutputBucket),
		Fleet:     aws.NewFleet(c.EC2, names.Fleet, names.LaunchTemplate),
		Replies:   aws.NewReplyQueues(c.SQS, names),
		WebTiers:  aws.NewWebInstances(c.EC2),
	}
	type opening struct {
		dst  *events.Queue
		name string
	}
	queues := []opening{{&b.Requests, names.RequestQueue}, {&b.Responses, names.ResponseQueue}}
	if cfg.DeadLetters {
		queues = append(queues, opening{&b.RequestDeadLetters, names.RequestDeadLetters})
	}
	for _, q := range queues {
		opened, err := aws.OpenQueue(ctx, c.SQS, q.name)
		if err != nil {
			return nil, err
		}
		if q.name == names.RequestQueue && cfg.Visibility > 0 {
			// Workers extend a request's visibility as soon as they have
			// it, so a request a stopped worker's long poll took comes
			// back in seconds.
			opened.HoldReceived(min(requestHold, cfg.Visibility))
		}
		*q.dst = opened
	}
	return b, nil
}

// Flags registers the flags that choose and name the backends, and
// returns the Config they fill. DeadLetters is the tier's to decide.
func Flags(fs *flag.FlagSet) *Config {
	c := &Config{}
	fs.StringVar(&c.Kind, "backend", "local", "queues and buckets to use: local (embedded) or aws")
	fs.StringVar(&c.Prefix, "prefix", "surge", "name prefix of queues and buckets")
	fs.StringVar(&c.InputBucket, "input-bucket", "", "aws backend: input bucket, if not <prefix>-in-bucket")
	fs.StringVar(&c.OutputBucket, "output-bucket", "", "aws backend: output bucket, if not <prefix>-out-bucket")
	fs.StringVar(&c.Table, "table", "", "aws backend: results table, if not <prefix>-dynamoDB")
	fs.StringVar(&c.DataDir, "data", ".data", "local backend: directory for queues, buckets and fleet state")
	fs.DurationVar(&c.Visibility, "visibility", events.RequestVisibility, "local backend: request visibility timeout")
	fs.IntVar(&c.MaxReceives, "max-receives", events.MaxReceives, "local backend: deliveries before a request is dead-lettered")
	fs.Var(&c.Latency, "latency", `added round trip per call, for benchmarks: "sqs=20ms,s3=25ms,dynamodb=8ms,jitter=0.25", "aws" for AWS's typical figures, or "none"`)
	return c
}
