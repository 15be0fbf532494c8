// Package webapi is the web tier: it takes image uploads over HTTP, stores
// them in the input bucket, queues a request for the workers and holds the
// client's connection until the matching result comes back on the response
// queue. The success body is exactly "<stem>:<label>", as the course's
// clients expect.
package webapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"

	"github.com/surgeml/surge/events"
	"github.com/surgeml/surge/internal/fleet"
	"github.com/surgeml/surge/internal/queue"
	"github.com/surgeml/surge/internal/results"
	"github.com/surgeml/surge/internal/scaling"
	"github.com/surgeml/surge/internal/vision"
)

// Requests is the request queue.
type Requests interface {
	Send(ctx context.Context, body []byte) error
	Counts(ctx context.Context) (queue.Counts, error)
}

// Responses is the response queue.
type Responses interface {
	Receive(ctx context.Context, max int, wait time.Duration) ([]queue.Message, error)
	Delete(ctx context.Context, receipt string) error
	Counts(ctx context.Context) (queue.Counts, error)
}

// Inputs is the input bucket.
type Inputs interface {
	Put(ctx context.Context, key string, body []byte) error
}

// Fleet lists the workers, for /status.
type Fleet interface {
	List(ctx context.Context) ([]fleet.Instance, error)
}

// Counter is a queue seen only through its counts, for /status.
type Counter interface {
	Counts(ctx context.Context) (queue.Counts, error)
}

// Backends are what the web tier talks to.
type Backends struct {
	Requests  Requests
	Responses Responses
	Inputs    Inputs
	Fleet     Fleet
	// DeadLetters is the request queue's dead-letter queue, shown in
	// /status so that requests that failed for good are not silent.
	DeadLetters Counter
	// Answers, if set, is the results table, named AnswersName in /status:
	// repeated uploads are answered from it.
	Answers     Answers
	AnswersName string
}

// Config tunes the web tier. Zero values take the defaults in brackets.
type Config struct {
	MaxUpload     int64         // largest accepted image in bytes [10 MB]
	MaxPixels     int           // largest accepted image in pixels [vision.DefaultMaxPixels]
	ResultTimeout time.Duration // how long an upload waits for its answer [5m]
	// UploadMemory caps the bytes of uploads held in memory at once,
	// from their arrival until they are stored; further bytes wait for
	// room [256 MB].
	UploadMemory int64
	// An upload's body must bring at least BodyMinBytes in every
	// BodyWindow [16 KB every 10s] and end within BodyTimeout [2m], or it
	// is cut with 408.
	BodyWindow   time.Duration
	BodyMinBytes int64
	BodyTimeout  time.Duration
	MaxWorkers   int           // the scaler's cap, for /status [scaling.DefaultMax]
	ResultsKept  int           // results kept for GET /results/{id} [100000]
	ResultsTTL   time.Duration // how long they are kept [1h]
	ShutdownWait time.Duration // how long shutdown waits for open requests [30s]
	// Model is the name the workers' answers carry (assets.ModelName); a
	// recorded answer from another model is not reused. Empty learns it
	// from the first answer.
	Model string
}

func (c *Config) defaults() {
	if c.MaxUpload <= 0 {
		c.MaxUpload = 10 << 20
	}
	if c.MaxPixels <= 0 {
		c.MaxPixels = vision.DefaultMaxPixels
	}
	if c.ResultTimeout <= 0 {
		c.ResultTimeout = 5 * time.Minute
	}
	if c.UploadMemory <= 0 {
		c.UploadMemory = 256 << 20
	}
	c.UploadMemory = max(c.UploadMemory, c.MaxUpload+multipartSlack)
	if c.BodyWindow <= 0 {
		c.BodyWindow = 10 * time.Second
	}
	if c.BodyMinBytes <= 0 {
		c.BodyMinBytes = 16 << 10
	}
	if c.BodyTimeout <= 0 {
		c.BodyTimeout = 2 * time.Minute
	}
	if c.MaxWorkers <= 0 {
		c.MaxWorkers = scaling.DefaultMax
	}
	if c.ResultsKept <= 0 {
		c.ResultsKept = 100_000
	}
	if c.ResultsTTL <= 0 {
		c.ResultsTTL = time.Hour
	}
	if c.ShutdownWait <= 0 {
		c.ShutdownWait = 30 * time.Second
	}
}

// multipartSlack is room for the multipart framing and small form fields
// around the file; more is refused.
const multipartSlack = 64 << 10

// Server is the web tier.
type Server struct {
	Backends
	cfg Config
	log *slog.Logger
	now func() time.Time

	budget  *budget
	bodies  *bodies
	gate    *keyGate
	waiters *waiters
	// jobs remembers every request id this process queued or saw answered,
	// with its result once known, for GET /results/{id}.
	jobs  *expirable.LRU[string, job]
	cache *cache
}

type job struct {
	stem   string
	result *events.Result
	cached bool // answered from the results table
}

// New assembles a web tier.
func New(cfg Config, b Backends, log *slog.Logger) *Server {
	cfg.defaults()
	c := &cache{table: b.Answers, name: b.AnswersName,
		lookups: results.NewHealth(log, "looking answers up"), recording: results.NewHealth(log, "workers recording answers")}
	if cfg.Model != "" {
		c.model.Store(&cfg.Model)
	}
	return &Server{
		Backends: b,
		cfg:      cfg,
		log:      log,
		now:      time.Now,
		budget:   newBudget(cfg.UploadMemory),
		bodies:   newBodies(pace{window: cfg.BodyWindow, minBytes: cfg.BodyMinBytes, timeout: cfg.BodyTimeout}, time.Now),
		gate:     newKeyGate(),
		waiters:  newWaiters(),
		jobs:     expirable.NewLRU[string, job](cfg.ResultsKept, nil, cfg.ResultsTTL),
		cache:    c,
	}
}

// Handler routes the web tier's endpoints.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	// Older clients post to other paths, such as /upload.php.
	mux.HandleFunc("POST /", s.upload)
	mux.HandleFunc("GET /{$}", s.page)
	mux.HandleFunc("GET /results/{id}", s.result)
	mux.HandleFunc("GET /status", s.status)
	mux.HandleFunc("GET /healthz", s.healthz)
	return nosniff(mux)
}

// Serve answers HTTP on ln and routes results until ctx ends, then stops
// taking connections, lets open requests finish (up to ShutdownWait) and
// returns.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	dispatchCtx, stopDispatch := context.WithCancel(context.WithoutCancel(ctx))
	dispatched := make(chan struct{})
	go func() {
		defer close(dispatched)
		s.dispatch(dispatchCtx)
	}()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	var err error
	select {
	case err = <-served:
	case <-ctx.Done():
		s.log.Info("shutting down; waiting for open requests", "waiting", s.waiters.len(), "limit", s.cfg.ShutdownWait)
		shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownWait)
		err = srv.Shutdown(shutCtx)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("%d requests still open after %v", s.waiters.len(), s.cfg.ShutdownWait)
			srv.Close()
		}
	}
	stopDispatch()
	<-dispatched
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}
