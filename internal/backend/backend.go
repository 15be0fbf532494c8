// Package backend opens the queues and buckets a tier runs on, by the
// names PROTOCOL.md gives them. It is the one place that knows every
// implementation; the tiers see only the interfaces they declare.
package backend

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/surgeml/surge/internal/blob"
	"github.com/surgeml/surge/internal/filestore"
	"github.com/surgeml/surge/internal/fleet"
	"github.com/surgeml/surge/internal/procfleet"
	"github.com/surgeml/surge/internal/queue"
	"github.com/surgeml/surge/internal/sqlitequeue"
)

// Names are the cloud resource names derived from a prefix.
type Names struct {
	RequestQueue, ResponseQueue, InputBucket, OutputBucket string
}

// NamesFor applies PROTOCOL.md's naming to prefix.
func NamesFor(prefix string) Names {
	return Names{
		RequestQueue:  prefix + "-req-queue",
		ResponseQueue: prefix + "-resp-queue",
		InputBucket:   prefix + "-in-bucket",
		OutputBucket:  prefix + "-out-bucket",
	}
}

// Config selects and configures the backends.
type Config struct {
	Kind   string // "local"
	Prefix string
	// DataDir holds everything of the local backend: queues/, buckets/
	// and fleet/.
	DataDir string
	// Visibility and MaxReceives configure the request queue (the
	// embedded one; SQS queues carry their own).
	Visibility  time.Duration
	MaxReceives int
}

// Backends are a tier's queues and buckets.
type Backends struct {
	Requests, Responses queue.Queue
	// RequestDeadLetters holds requests delivered MaxReceives times.
	RequestDeadLetters queue.Queue
	Inputs, Outputs    blob.Store
	// Fleet shows the workers (read-only).
	Fleet interface {
		List(ctx context.Context) ([]fleet.Instance, error)
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

// Open opens the configured backends.
func Open(ctx context.Context, cfg Config) (*Backends, error) {
	switch cfg.Kind {
	case "", "local":
		return openLocal(ctx, cfg)
	default:
		return nil, fmt.Errorf("unknown backend %q (want local)", cfg.Kind)
	}
}

// FleetDir is where the local fleet keeps its state.
func FleetDir(dataDir string) string { return filepath.Join(dataDir, "fleet") }

func openLocal(ctx context.Context, cfg Config) (*Backends, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("local backend: no data directory")
	}
	names := NamesFor(cfg.Prefix)
	qdir := filepath.Join(cfg.DataDir, "queues")
	b := &Backends{}
	req, err := sqlitequeue.Open(ctx, qdir, names.RequestQueue, sqlitequeue.Options{Visibility: cfg.Visibility, MaxReceives: cfg.MaxReceives})
	if err != nil {
		return nil, err
	}
	b.close = append(b.close, req.Close)
	// Results are consumed by one web tier and never retried, so the
	// defaults suit them.
	resp, err := sqlitequeue.Open(ctx, qdir, names.ResponseQueue, sqlitequeue.Options{})
	if err != nil {
		b.Close()
		return nil, err
	}
	b.close = append(b.close, resp.Close)
	in, err := filestore.Open(filepath.Join(cfg.DataDir, "buckets", names.InputBucket))
	if err != nil {
		b.Close()
		return nil, err
	}
	out, err := filestore.Open(filepath.Join(cfg.DataDir, "buckets", names.OutputBucket))
	if err != nil {
		b.Close()
		return nil, err
	}
	b.Requests, b.Responses, b.RequestDeadLetters = req, resp, req.DeadLetters()
	b.Inputs, b.Outputs = in, out
	b.Fleet = procfleet.NewReader(FleetDir(cfg.DataDir))
	b.Changed = req.Changed
	return b, nil
}
