// Package frontend is the web tier: it takes image uploads over HTTP, stores
// them in the input bucket, queues a request for the workers and holds the
// client's connection until the matching result comes back on the response
// queue. The success body is exactly "<stem>:<label>", as the course's
// clients expect.
package frontend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"

	"github.com/surgeml/surge/events"
	"github.com/surgeml/surge/internal/metrics"
	"github.com/surgeml/surge/internal/vision"
)

// Requests is the request queue.
type Requests interface {
	Send(ctx context.Context, body []byte) error
	Counts(ctx context.Context) (events.Counts, error)
}

// Responses is the response queue.
type Responses interface {
	Receive(ctx context.Context, max int, wait time.Duration) ([]events.Message, error)
	DeleteBatch(ctx context.Context, receipts []string) error
	Counts(ctx context.Context) (events.Counts, error)
}

// Inputs is the input bucket.
type Inputs interface {
	Put(ctx context.Context, key string, body []byte) error
}

// Fleet lists the workers, for /status.
type Fleet interface {
	List(ctx context.Context) ([]events.Instance, error)
}

// DeadLetters is the request queue's dead-letter queue. The web tier
// counts it for /status and reads it without deleting anything, to learn
// which requests failed for good.
type DeadLetters interface {
	Receive(ctx context.Context, max int, wait time.Duration) ([]events.Message, error)
	Counts(ctx context.Context) (events.Counts, error)
}

// Backends are what the web tier talks to.
type Backends struct {
	Requests  Requests
	Responses Responses
	Inputs    Inputs
	Fleet     Fleet
	// DeadLetters, if set, is the request queue's dead-letter queue: a
	// request found there is answered as failed (CodeDeadLettered), and
	// /status counts them.
	DeadLetters DeadLetters
	// Answers, if set, is the results table, named AnswersName in /status:
	// repeated uploads are answered from it.
	Answers     Answers
	AnswersName string

	// With several web instances, each reads its own reply queue,
	// Replies, whose name, ReplyTo, its requests carry; the shared
	// Responses queue then carries only results whose queue was gone, which
	// are passed on through Others to the instance waiting for them, if it
	// is still there. Records, the results table, holds what the workers
	// record by request id, for GET /results/{id} on any instance, and the
	// marks of uploads being answered, so that the same upload sent again
	// to another instance waits for that answer.
	Replies Responses
	ReplyTo string
	Others  ReplyQueues
	Records Records
}

// ReplyQueues finds other web instances' reply queues.
type ReplyQueues interface {
	Open(ctx context.Context, name string) (events.Queue, error)
}

// Records is the results table, read and written.
type Records interface {
	Get(ctx context.Context, name string) (events.Item, error)
	Put(ctx context.Context, it events.Item) error
	Mark(ctx context.Context, it events.Item) error
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
	MaxWorkers   int // the scaler's cap, for /status [events.DefaultMax]
	MinWorkers   int // the scaler's floor, for /status [0]
	// Receivers long-poll the response queue side by side, each taking
	// up to events.MaxBatch results a round trip, so that results leave
	// the queue as fast as a full fleet answers even when each round
	// trip takes tens of milliseconds [DefaultReceivers].
	Receivers   int
	ResultsKept int           // results kept for GET /results/{id} [100000]
	ResultsTTL  time.Duration // how long they are kept [1h]
	// DrainTimeout bounds how long a stopping web tier keeps answering
	// the uploads already open; those still waiting then get 503 with
	// their ids [DefaultDrainTimeout].
	DrainTimeout time.Duration
	// EMF, if set, is given the web tier's CloudWatch metrics
	// (metrics.WebEMF); GET /metrics serves them either way.
	EMF *metrics.EMF
	// Model is the name the workers' answers carry (assets.ModelName); a
	// recorded answer from another model is not reused. Empty learns it
	// from the first answer.
	Model string
	// MinFreeBytes is the least free space the input bucket's disk must
	// have (when it is a disk) for the web tier to be ready [MaxUpload].
	MinFreeBytes int64
	// ReadyHold is how long a failure to store an upload keeps the web
	// tier unready, unless an upload is stored meanwhile [30s].
	ReadyHold time.Duration
	// MaxConns caps open connections, in all and from one client address;
	// at a cap, those longest without a request are closed to make room
	// [the descriptor limit less 512; half of MaxConns].
	MaxConns, MaxConnsPerClient int
	// KeepAlive is how long an idle connection is kept open for its next
	// request [2m]. Behind a load balancer it must exceed the balancer's
	// idle timeout, so that the balancer, not the server, closes idle
	// connections and none is closed as a request is sent on it.
	KeepAlive time.Duration
}

// memoryHeadroom is what a web tier uses besides its uploads: the
// runtime, its goroutines and buffers, the form parsing outside the budget.
const memoryHeadroom = 16 << 20

// MemoryLimit is the soft memory limit the web tier process should run
// under: its upload budget and memoryHeadroom.
func (c Config) MemoryLimit() int64 {
	c.defaults()
	return c.UploadMemory + memoryHeadroom
}

func (c *Config) defaults() {
	if c.MaxUpload <= 0 {
		c.MaxUpload = defaultMaxUpload
	}
	if c.MinFreeBytes <= 0 {
		c.MinFreeBytes = c.MaxUpload
	}
	if c.ReadyHold <= 0 {
		c.ReadyHold = 30 * time.Second
	}
	if c.MaxPixels <= 0 {
		c.MaxPixels = vision.DefaultMaxPixels
	}
	if c.ResultTimeout <= 0 {
		c.ResultTimeout = defaultResultTimeout
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
		c.MaxWorkers = events.DefaultMaxWorkers
	}
	if c.ResultsKept <= 0 {
		c.ResultsKept = 100_000
	}
	if c.ResultsTTL <= 0 {
		c.ResultsTTL = time.Hour
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	if c.Receivers <= 0 {
		c.Receivers = DefaultReceivers
	}
	if c.KeepAlive <= 0 {
		c.KeepAlive = 2 * time.Minute
	}
}

// DefaultReceivers keeps a long poll waiting whenever a result lands: a
// long poll returns as soon as a result is there, often with just that
// one, and is away for its round trip (~20 ms on SQS) before it polls
// again, so at R results a second about R × 20 ms receivers are away at
// any moment; 16 leave most waiting at the 500 a second a local fleet
// reaches, and an idle long poll costs one call every 20 seconds.
const DefaultReceivers = 16

// deletesInFlight is how many batches of routed results are being
// deleted at once: each takes up to events.MaxBatch results a round trip,
// so four clear ~2000 results a second at 20 ms.
const deletesInFlight = 4

// DefaultDrainTimeout gives a fleet that is up time to clear a burst of
// the course's size (100 requests take seconds) and one starting from zero
// time to boot and start on it, while a stop still ends well inside the
// 120 s that systemd gives the web tier's unit (TimeoutStopSec) before it
// kills it, with room for the final answers.
const DefaultDrainTimeout = 60 * time.Second

// finalAnswers is how long, once the drain timeout ends, the uploads still
// waiting get to write their 503s before their connections are closed.
const finalAnswers = 5 * time.Second

// multipartSlack is room for the multipart framing and small form fields
// around the file; more is refused.
const multipartSlack = 64 << 10

// Server is the web tier.
type Server struct {
	storing storeHealth // whether uploads could be stored lately, for readiness
	Backends
	cfg Config
	log *slog.Logger
	now func() time.Time

	budget  *budget
	bodies  *bodies
	gate    *keyGate
	waiters *waiters
	// queueWaits is how long recent results waited in the response queue.
	queueWaits queueWaits
	// jobs remembers every request id this process queued or saw answered,
	// with its result once known, for GET /results/{id}; jobsMu orders
	// the read-then-write updates of an id's result.
	jobs   *expirable.LRU[string, job]
	jobsMu sync.Mutex
	cache  *cache
	// metrics counts uploads and results for GET /metrics and EMF.
	metrics *webMetrics
	// drainOver is closed when a stop's drain timeout has ended and
	// results are no longer routed: uploads still waiting give up then.
	drainOver chan struct{}
	// hurry is done once Hurry is called.
	hurry   context.Context
	hurried context.CancelFunc
	// history is the samples of GET /status/history.
	history history
	// open counts the uploads being read, stored or waiting for their
	// answers: the load an instance carries, for scaling the web tier.
	open atomic.Int64
}

type job struct {
	stem   string
	since  time.Time // when the request was queued or first seen
	result *events.Result
	cached bool // answered from the results table
	// unclaimed marks a result that came when no upload was waiting for
	// it: its client can only learn it from GET /results/{id}.
	unclaimed bool
}

// New assembles a web tier.
func New(cfg Config, b Backends, log *slog.Logger) *Server {
	cfg.defaults()
	c := &cache{table: b.Answers, name: b.AnswersName,
		lookups: events.NewTableHealth(log, "looking answers up"), recording: events.NewTableHealth(log, "workers recording answers")}
	if cfg.Model != "" {
		c.model.Store(&cfg.Model)
	}
	if b.Replies != nil {
		c.marks = b.Records
	}
	hurry, hurried := context.WithCancel(context.Background())
	s := &Server{
		Backends:  b,
		cfg:       cfg,
		log:       log,
		now:       time.Now,
		budget:    newBudget(cfg.UploadMemory),
		bodies:    newBodies(pace{window: cfg.BodyWindow, minBytes: cfg.BodyMinBytes, timeout: cfg.BodyTimeout}, time.Now),
		gate:      newKeyGate(),
		waiters:   newWaiters(),
		jobs:      expirable.NewLRU[string, job](cfg.ResultsKept, nil, cfg.ResultsTTL),
		cache:     c,
		drainOver: make(chan struct{}),
		hurry:     hurry,
		hurried:   hurried,
	}
	s.metrics = newWebMetrics(s, cfg.EMF)
	return s
}

// Handler routes the web tier's endpoints.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	// Older clients post to other paths, such as /upload.php.
	mux.HandleFunc("POST /", s.upload)
	mux.HandleFunc("GET /{$}", s.page)
	mux.Handle("GET /web/", s.assets())
	mux.HandleFunc("GET /status/history", s.statusHistory)
	mux.HandleFunc("GET /results/{id}", s.result)
	mux.HandleFunc("GET /status", s.status)
	mux.HandleFunc("GET /healthz", s.ready)
	mux.HandleFunc("GET /readyz", s.ready)
	mux.HandleFunc("GET /livez", s.live)
	mux.HandleFunc("GET /metrics", s.serveMetrics)
	return nosniff(mux)
}

// Serve answers HTTP on ln and routes results until ctx ends. Then it
// drains: it takes no new connections, and the uploads already open get
// their answers for up to DrainTimeout while results are still routed
// (whoever runs the fleet must keep it working meanwhile). It returns nil
// if every open request was answered; past the timeout, the uploads still
// waiting are answered 503 with their ids, and Serve says so.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       s.cfg.KeepAlive,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		ConnState:         newConnLimit(s.cfg.MaxConns, s.cfg.MaxConnsPerClient, s.log).state,
	}
	routeCtx, stopRouting := context.WithCancel(context.WithoutCancel(ctx))
	var routing sync.WaitGroup
	routing.Go(func() { s.dispatch(routeCtx) })
	routing.Go(func() { s.watchDeadLetters(routeCtx) })
	routing.Go(func() { s.sampleHistory(routeCtx) })
	routing.Go(func() { s.sampleOpen(routeCtx) })
	halt := func() { stopRouting(); routing.Wait() }
	defer halt()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	select {
	case err := <-served:
		return err
	case <-ctx.Done():
		return s.drain(srv, halt)
	}
}

// drain shuts srv down, giving open requests up to DrainTimeout. If some
// are still open then, it stops routing results (halt) and only then
// tells the waiting uploads to fetch their results later: a result that
// arrives after that stays in the response queue for the next web tier
// rather than being taken for a client that was just sent away.
func (s *Server) drain(srv *http.Server, halt func()) error {
	s.log.Info("stopping: no new connections; answering the open uploads", "waiting", s.waiters.len(), "drain_timeout", s.cfg.DrainTimeout)
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.DrainTimeout)
	stopHurry := context.AfterFunc(s.hurry, cancel)
	err := srv.Shutdown(ctx)
	stopHurry()
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
		if err == nil {
			s.log.Info("drained: every open upload answered")
		}
		return err
	}
	halt()
	left := s.waiters.len()
	close(s.drainOver)
	ctx, cancel = context.WithTimeout(context.Background(), finalAnswers)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		// Uploads still sending their bodies: never queued, nothing to
		// fetch later.
		srv.Close()
	}
	cut := fmt.Sprintf("drain timeout %v", s.cfg.DrainTimeout)
	if s.hurry.Err() != nil {
		cut = "drain cut short"
	}
	err = fmt.Errorf("%s: %d uploads still waiting were answered 503 with their ids, to fetch their results later", cut, left)
	s.log.Warn("stopped before every open upload was answered", "err", err)
	return err
}

// Hurry ends a stop's drain now, or makes the next one end at once: the
// uploads still waiting are answered 503 with their ids without waiting
// for the drain timeout. For a second Ctrl-C, or a supervisor that died
// and took the fleet with it.
func (s *Server) Hurry() { s.hurried() }
