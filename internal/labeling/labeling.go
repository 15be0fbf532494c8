// Package labeling is the worker: it takes recognition requests off the
// request queue, labels the stored image, records the label in the output
// bucket, answers on the response queue and only then deletes the request.
// A failure that retrying could fix leaves the request for redelivery; one
// that it could not (an undecodable image) is answered with an error.
//
// A worker holds more requests than it has cores, so that while some are
// being recognised others are downloading, uploading or waiting on the
// queues, whose round trips on AWS take milliseconds each; decoding and
// inference, which use a core each, are held to Config.Inferences at once.
package labeling

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"image"
	"log/slog"
	"runtime"
	"sync"
	"time"

	"github.com/surgeml/surge/events"
	"github.com/surgeml/surge/internal/vision"
)

// Requests is the request queue as the worker uses it.
type Requests interface {
	Receive(ctx context.Context, max int, wait time.Duration) ([]events.Message, error)
	Extend(ctx context.Context, receipt string, d time.Duration) error
	DeleteBatch(ctx context.Context, receipts []string) error
}

// Responses is the response queue.
type Responses interface {
	SendBatch(ctx context.Context, bodies [][]byte) error
}

// ReplyQueues are the web instances' reply queues, by name.
type ReplyQueues interface {
	// Open finds a queue; an error wrapping events.ErrNoQueue says it is
	// gone.
	Open(ctx context.Context, name string) (events.Queue, error)
}

// Inputs is the input bucket.
type Inputs interface {
	Get(ctx context.Context, key string) ([]byte, error)
}

// Outputs is the output bucket.
type Outputs interface {
	Put(ctx context.Context, key string, body []byte) error
}

// Table is the results table, where each answer is recorded under its
// file name for the web tier to reuse.
type Table interface {
	Put(ctx context.Context, it events.Item) error
}

// Recognizer labels a decoded image. Implementations must allow
// concurrent calls.
type Recognizer interface {
	Name() string
	Recognize(img image.Image) (label string, score float64, err error)
}

// Observer is told what the worker does, for its metrics. Its methods
// must allow concurrent calls.
type Observer interface {
	// Inferred is each decoding and inference's time on its slot.
	Inferred(d time.Duration)
	// Recognised, Failed and Retried are each request's outcome:
	// answered with a label, answered with an error (the image, or the
	// last delivery, failed for good), or left for another delivery.
	Recognised()
	Failed()
	Retried()
}

// noObserver is the Observer of a worker nobody watches.
type noObserver struct{}

func (noObserver) Inferred(time.Duration) {}
func (noObserver) Recognised()            {}
func (noObserver) Failed()                {}
func (noObserver) Retried()               {}

// BytesRecognizer is a Recognizer that reads the upload's own bytes (a
// model in another process, which decodes for itself). The worker still
// inspects the header (a known format, within Config.MaxPixels) before
// handing the bytes over, so it refuses the same images either way; an
// error with a Refused method that returns true is the model refusing the
// image, answered as undecodable, and any other error is retried.
type BytesRecognizer interface {
	RecognizeBytes(ctx context.Context, data []byte) (label string, score float64, err error)
}

// Config tunes a worker. Zero values take the defaults in brackets.
type Config struct {
	Name string // instance name reported in results
	// Inferences is how many images are decoded and recognised at once,
	// each on a core [runtime.GOMAXPROCS: the instance's cores, or as many
	// as the process is given, as a local fleet's workers sharing one
	// machine are given one].
	Inferences int
	// Concurrency is how many messages are held at once: fetched,
	// waiting for an inference, or being answered [HeldPerInference ×
	// Inferences]. On AWS a request costs ~100 ms of calls (fetch, output,
	// table, answer, delete) against a few ms of inference, so a core
	// stays busy only if many are in their round trips at once.
	Concurrency int
	// FetchAhead is how many held messages may have their upload in
	// memory, fetched and waiting for an inference [FetchPerInference ×
	// Inferences]: the rest are in round trips that hold no image, so
	// memory follows this, not Concurrency.
	FetchAhead  int
	Visibility  time.Duration // the request queue's visibility timeout [30s]
	Wait        time.Duration // long-poll wait [20s]
	MaxReceives int           // deliveries before the queue dead-letters a request [5]
	MaxPixels   int           // largest image decoded [vision.DefaultMaxPixels]
	// InferenceNice, when positive, is the niceness decoding and
	// inference run at. A local fleet shares one machine's cores with the
	// web tier, and many workers' inferences would keep the tiers' queue
	// and storage calls waiting behind them; on an instance of its own a
	// worker leaves it 0.
	InferenceNice int
	// Held, if set, is told how many messages the worker holds whenever
	// that changes, so a scaler can tell idle workers from busy ones.
	Held func(n int)
	// IdleExit, if set, ends Run with ErrIdle once the worker has held
	// nothing for this long, so that an instance can shut itself down.
	IdleExit time.Duration
	// Observer, if set, is told each inference's time and each
	// request's outcome.
	Observer Observer
}

// The defaults per inference: enough held requests to hide AWS's round
// trips behind inference (make bench-cloud measures it), and enough
// fetched ahead to keep the cores fed.
const (
	HeldPerInference  = 32
	FetchPerInference = 8
)

// ErrIdle ends a Run that had no work for Config.IdleExit.
var ErrIdle = errors.New("worker idle")

func (c *Config) defaults() {
	if c.Inferences < 1 {
		c.Inferences = runtime.GOMAXPROCS(0)
	}
	if c.Concurrency < 1 {
		c.Concurrency = HeldPerInference * c.Inferences
	}
	if c.FetchAhead < 1 {
		c.FetchAhead = min(FetchPerInference*c.Inferences, c.Concurrency)
	}
	if c.Visibility <= 0 {
		c.Visibility = events.RequestVisibility
	}
	if c.Wait <= 0 {
		c.Wait = defaultWait
	}
	if c.MaxReceives < 1 {
		c.MaxReceives = events.MaxReceives
	}
	if c.MaxPixels <= 0 {
		c.MaxPixels = vision.DefaultMaxPixels
	}
	if c.Observer == nil {
		c.Observer = noObserver{}
	}
}

// Worker processes requests until its context ends.
type Worker struct {
	cfg        Config
	requests   Requests
	responses  Responses
	inputs     Inputs
	outputs    Outputs
	table      Table
	tableOK    *events.TableHealth
	recognizer Recognizer
	log        *slog.Logger
	// inferences takes each decoding and inference to one of
	// Config.Inferences goroutines, started by Run.
	inferences chan func()
	// replies, if set, are the reply queues requests may name.
	replies ReplyQueues
	// answers sends results to their queues in batches, during Run.
	answers *events.Batcher[reply]
	// fetched is a token per upload held in memory before its inference.
	fetched chan struct{}

	mu        sync.Mutex
	held      int
	idleSince time.Time
}

// New assembles a worker. table may be nil: answers then go only to the
// output bucket and the response queue.
func New(cfg Config, requests Requests, responses Responses, inputs Inputs, outputs Outputs, table Table, r Recognizer, log *slog.Logger) *Worker {
	cfg.defaults()
	return &Worker{cfg: cfg, requests: requests, responses: responses, inputs: inputs, outputs: outputs, table: table,
		tableOK: events.NewTableHealth(log, "recording answers"), recognizer: r, log: log, idleSince: time.Now(),
		inferences: make(chan func()), fetched: make(chan struct{}, cfg.FetchAhead)}
}

// WithReplies has the worker answer each request that names its web
// instance's reply queue there, rather than on the shared response queue.
// It returns w.
func (w *Worker) WithReplies(r ReplyQueues) *Worker {
	w.replies = r
	return w
}

// Concurrency is how many requests the worker holds at once.
func (w *Worker) Concurrency() int { return w.cfg.Concurrency }

// Inferences is how many images it decodes and recognises at once.
func (w *Worker) Inferences() int { return w.cfg.Inferences }

// Run receives and processes requests until ctx is cancelled, then
// finishes the requests it holds and returns. Receive errors are retried
// with backoff; they do not end the run.
func (w *Worker) Run(ctx context.Context) error {
	// Requests already received are finished even after ctx ends: dropping
	// them would only delay their answers by a visibility timeout.
	work := context.WithoutCancel(ctx)
	slots := make(chan struct{}, w.cfg.Concurrency)
	// One batch of answers and one of deletes on its way at a time: the
	// others gather while it is, which keeps the calls (AWS bills each)
	// few.
	w.answers = events.NewBatcher(work, w.sendReplies, 1)
	deletes := events.NewBatcher(work, w.requests.DeleteBatch, 1)
	var inferring sync.WaitGroup
	for range w.cfg.Inferences {
		inferring.Go(w.infer)
	}
	var wg sync.WaitGroup
	defer func() { wg.Wait(); w.answers.Close(); deletes.Close(); close(w.inferences); inferring.Wait() }()
	backoff := events.Backoff{Min: 100 * time.Millisecond, Max: 5 * time.Second}
	for ctx.Err() == nil {
		// Wait for a free slot, then ask for as many messages as are free.
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			continue
		}
		free := 1
		for len(slots) < cap(slots) {
			slots <- struct{}{}
			free++
		}
		wait, idle := w.pollWait()
		if idle {
			for range free {
				<-slots
			}
			w.log.Info("no work; leaving", "idle_for", w.cfg.IdleExit)
			return ErrIdle
		}
		msgs, err := w.requests.Receive(ctx, free, wait)
		for range free - len(msgs) {
			<-slots
		}
		for _, m := range msgs {
			w.adjustHeld(1)
			wg.Go(func() {
				defer func() { <-slots }()
				defer w.adjustHeld(-1)
				w.handle(work, m, deletes)
			})
		}
		backoff.After(ctx, err, w.log, "receiving requests")
	}
	return nil
}

// pollWait is how long the next long poll may wait, and whether the
// worker has been idle long enough to leave.
func (w *Worker) pollWait() (time.Duration, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cfg.IdleExit <= 0 {
		return w.cfg.Wait, false
	}
	if w.held > 0 {
		// What is held may finish during this poll; a shorter poll lets
		// the idle clock be read again within IdleExit of that.
		return min(w.cfg.Wait, w.cfg.IdleExit), false
	}
	left := w.cfg.IdleExit - time.Since(w.idleSince)
	return min(w.cfg.Wait, left), left <= 0
}

func (w *Worker) adjustHeld(d int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.held += d
	if w.held == 0 {
		w.idleSince = time.Now()
	}
	if w.cfg.Held != nil {
		w.cfg.Held(w.held)
	}
}

// failure is a problem with one request. Permanent ones are answered with
// their code; the others leave the request for redelivery.
type failure struct {
	code      events.ErrorCode
	permanent bool
	err       error
}

func permanent(code events.ErrorCode, err error) *failure {
	return &failure{code: code, permanent: true, err: err}
}

func transient(err error) *failure {
	return &failure{code: events.ErrFailed, err: err}
}

func (w *Worker) handle(ctx context.Context, m events.Message, deletes *events.Batcher[string]) {
	start := time.Now()
	req, err := events.DecodeRequest(m.Body)
	if err != nil {
		// Without a valid request there is no one to answer; the queue
		// moves the message to its dead-letter queue after MaxReceives.
		w.log.Error("unreadable request; leaving it for the dead-letter queue", "message", m.ID, "receives", m.ReceiveCount, "err", err)
		return
	}
	log := w.log.With("id", req.ID, "key", req.Key, "receive", m.ReceiveCount)

	stop := w.keepHidden(ctx, m.Receipt, log)
	res, f := w.process(ctx, req)
	stop()

	res.Elapsed = events.Millis(time.Since(start))
	switch {
	case f == nil:
		if err := w.answer(res); err != nil {
			w.retryLater(ctx, m, req, log, transient(err))
			return
		}
		w.cfg.Observer.Recognised()
		log.Info("recognised", "label", res.Label, "score", res.Score, "elapsed", time.Duration(res.Elapsed))
	case f.permanent:
		res.Error = &events.Error{Code: f.code, Message: f.err.Error()}
		if err := w.answer(res); err != nil {
			w.retryLater(ctx, m, req, log, transient(err))
			return
		}
		w.cfg.Observer.Failed()
		log.Warn("request failed", "code", f.code, "err", f.err)
	default:
		w.retryLater(ctx, m, req, log, f)
		return
	}
	if err := deletes.Do(m.Receipt); err != nil {
		// The request comes back and is answered again with the same
		// label: wasteful, not wrong.
		log.Error("deleting answered request", "err", err)
	}
}

func (w *Worker) process(ctx context.Context, req events.Request) (res events.Result, f *failure) {
	res = events.Result{V: events.Version, ID: req.ID, Stem: req.Stem, Model: w.recognizer.Name(), Worker: w.cfg.Name, ReplyTo: req.ReplyTo}
	defer func() {
		// A panic while labelling one image must not take the worker and
		// every other held request down with it.
		if p := recover(); p != nil {
			f = permanent(events.ErrFailed, fmt.Errorf("internal error: %v", p))
		}
	}()
	select {
	case w.fetched <- struct{}{}:
	case <-ctx.Done():
		return res, transient(fmt.Errorf("waiting to fetch the input: %w", ctx.Err()))
	}
	fetchedHeld := true
	releaseFetched := func() {
		if fetchedHeld {
			fetchedHeld = false
			<-w.fetched
		}
	}
	defer releaseFetched()
	data, err := w.inputs.Get(ctx, req.Key)
	if errors.Is(err, events.ErrNoObject) {
		return res, permanent(events.ErrInputMissing, fmt.Errorf("input %s is missing", req.Key))
	}
	if err != nil {
		return res, transient(fmt.Errorf("reading input: %w", err))
	}
	if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != req.SHA256 {
		return res, permanent(events.ErrInputMissing, fmt.Errorf("input %s was replaced by a different upload", req.Key))
	}
	label, score, f := w.recognize(ctx, data)
	data = nil
	releaseFetched()
	if f != nil {
		return res, f
	}
	res.Label, res.Score = label, score
	if err := w.outputs.Put(ctx, events.ObjectKey(req.Stem), []byte(label)); err != nil {
		return res, transient(fmt.Errorf("writing output: %w", err))
	}
	res.Unrecorded = w.record(ctx, req, res)
	return res, nil
}

// infer runs decodings and inferences until Run ends, on a thread of its
// own at Config.InferenceNice.
func (w *Worker) infer() {
	if w.cfg.InferenceNice > 0 {
		runtime.LockOSThread() // the niceness is the thread's: never unlocked, the thread ends with the goroutine
		if err := lowerThreadPriority(w.cfg.InferenceNice); err != nil {
			w.log.Warn("inference keeps its priority", "nice", w.cfg.InferenceNice, "err", err)
		}
	}
	for job := range w.inferences {
		job()
	}
}

// recognize decodes and labels an image on one of the inference
// goroutines, so that no more images are decoded at once than there are
// inferences: a decoded image can take far more memory than its upload.
func (w *Worker) recognize(ctx context.Context, data []byte) (label string, score float64, f *failure) {
	done := make(chan struct{})
	w.inferences <- func() {
		defer close(done)
		defer func() {
			// A panic while labelling one image must not take the worker
			// and every other held request down with it.
			if p := recover(); p != nil {
				f = permanent(events.ErrFailed, fmt.Errorf("internal error: %v", p))
			}
		}()
		start := time.Now()
		defer func() { w.cfg.Observer.Inferred(time.Since(start)) }()
		if br, ok := w.recognizer.(BytesRecognizer); ok {
			label, score, f = w.inspectAndRecognize(ctx, br, data)
			return
		}
		label, score, f = w.decodeAndRecognize(data)
	}
	<-done
	return label, score, f
}

func (w *Worker) decodeAndRecognize(data []byte) (label string, score float64, f *failure) {
	img, err := vision.Decode(data, w.cfg.MaxPixels)
	switch {
	case errors.Is(err, vision.ErrTooLarge):
		return "", 0, permanent(events.ErrImageTooLarge, err)
	case err != nil:
		return "", 0, permanent(events.ErrUndecodable, err)
	}
	label, score, err = w.recognizer.Recognize(img)
	if err != nil {
		return "", 0, transient(fmt.Errorf("recognising: %w", err))
	}
	return label, score, nil
}

func (w *Worker) inspectAndRecognize(ctx context.Context, r BytesRecognizer, data []byte) (label string, score float64, f *failure) {
	_, err := vision.Inspect(data, w.cfg.MaxPixels)
	switch {
	case errors.Is(err, vision.ErrTooLarge):
		return "", 0, permanent(events.ErrImageTooLarge, err)
	case err != nil:
		return "", 0, permanent(events.ErrUndecodable, err)
	}
	label, score, err = r.RecognizeBytes(ctx, data)
	var refusal interface{ Refused() bool }
	switch {
	case errors.As(err, &refusal) && refusal.Refused():
		return "", 0, permanent(events.ErrUndecodable, err)
	case err != nil:
		return "", 0, transient(fmt.Errorf("recognising: %w", err))
	}
	return label, score, nil
}

// record puts the answer in the results table. The table is a cache of
// answers, so when it is down the answer still goes out, saying why it
// was not recorded, and the outage is logged once. A request from a web
// instance with a reply queue (one of several) is recorded by its id as
// well, so that any of them can answer GET /results/{id}, the one that
// asked included if it is gone.
func (w *Worker) record(ctx context.Context, req events.Request, res events.Result) (unrecorded string) {
	if w.table == nil {
		return ""
	}
	it := events.Item{
		Name: req.Name, Stem: req.Stem, Label: res.Label, Score: res.Score,
		Model: res.Model, SHA256: req.SHA256, Time: time.Now(),
	}
	var byID error
	var wg sync.WaitGroup
	if req.ReplyTo != "" {
		byReq := it
		byReq.Name = events.RequestKey(req.ID)
		wg.Go(func() { byID = w.table.Put(ctx, byReq) })
	}
	err := w.table.Put(ctx, it)
	wg.Wait()
	err = errors.Join(err, byID)
	w.tableOK.Observe(ctx, err)
	if err != nil {
		return err.Error()
	}
	return ""
}

// reply is a result's wire form and the queue it goes to ("": the shared
// response queue).
type reply struct {
	to   string
	body []byte
}

func (w *Worker) answer(res events.Result) error {
	res.Answered = time.Now().UTC()
	body, err := events.EncodeResult(res)
	if err != nil {
		return err
	}
	if err := w.answers.Do(reply{to: res.ReplyTo, body: body}); err != nil {
		return fmt.Errorf("sending result: %w", err)
	}
	return nil
}

// sendReplies sends a batch of results, each group to its queue, and
// reports the entries that failed by their index in the batch.
func (w *Worker) sendReplies(ctx context.Context, replies []reply) error {
	groups := map[string][]int{}
	for i, r := range replies {
		groups[r.to] = append(groups[r.to], i)
	}
	failed := map[int]error{}
	for to, idx := range groups {
		bodies := make([][]byte, len(idx))
		for j, i := range idx {
			bodies[j] = replies[i].body
		}
		err := w.sendTo(ctx, to, bodies)
		var be *events.BatchError
		switch {
		case err == nil:
		case errors.As(err, &be):
			for j, e := range be.Failed {
				failed[idx[j]] = e
			}
		default:
			for _, i := range idx {
				failed[i] = err
			}
		}
	}
	if len(failed) > 0 {
		return &events.BatchError{Failed: failed}
	}
	return nil
}

// sendTo sends to the reply queue named to, or to the shared response
// queue when it names none or its queue is gone: the sweeper passes what
// lands there on, or records it.
func (w *Worker) sendTo(ctx context.Context, to string, bodies [][]byte) error {
	if to == "" || w.replies == nil {
		return w.responses.SendBatch(ctx, bodies)
	}
	q, err := w.replies.Open(ctx, to)
	if err == nil {
		err = q.SendBatch(ctx, bodies)
	}
	if errors.Is(err, events.ErrNoQueue) {
		w.log.Info("reply queue gone; answering on the shared response queue", "queue", to, "results", len(bodies))
		return w.responses.SendBatch(ctx, bodies)
	}
	return err
}

// retryLater leaves a request whose failure may pass for another delivery,
// shortening its invisibility so the retry comes soon. On the last
// delivery the client is told instead of being left to time out; the
// request still goes to the dead-letter queue for inspection.
func (w *Worker) retryLater(ctx context.Context, m events.Message, req events.Request, log *slog.Logger, f *failure) {
	if m.ReceiveCount >= w.cfg.MaxReceives {
		res := events.Result{V: events.Version, ID: req.ID, Stem: req.Stem, Worker: w.cfg.Name,
			Error: &events.Error{Code: events.ErrFailed, Message: fmt.Sprintf("gave up after %d attempts: %v", m.ReceiveCount, f.err)}}
		if err := w.answer(res); err != nil {
			log.Error("reporting final failure", "err", err)
		}
		// Visible again at once, the queue moves it to the dead-letter
		// queue on its next receive rather than after a timeout.
		if err := w.requests.Extend(ctx, m.Receipt, 0); err != nil {
			log.Error("releasing failed request", "err", err)
		}
		w.cfg.Observer.Failed()
		log.Error("request failed on its last delivery; leaving it for the dead-letter queue", "err", f.err)
		return
	}
	retry := min(time.Duration(1<<min(m.ReceiveCount, 5))*time.Second, w.cfg.Visibility)
	if err := w.requests.Extend(ctx, m.Receipt, retry); err != nil {
		log.Error("scheduling retry", "err", err)
	}
	w.cfg.Observer.Retried()
	log.Warn("request failed; will be redelivered", "err", f.err, "retry_in", retry)
}

// keepHidden extends the message's invisibility while it is being worked
// on, so a slow image is not handed to a second worker: at once (a queue
// may hand messages out hidden only briefly, see
// sqsqueue.Queue.HoldReceived), then every third of the visibility
// timeout.
func (w *Worker) keepHidden(ctx context.Context, receipt string, log *slog.Logger) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(w.cfg.Visibility / 3)
		defer t.Stop()
		for {
			if err := w.requests.Extend(ctx, receipt, w.cfg.Visibility); err != nil && ctx.Err() == nil {
				log.Warn("extending visibility", "err", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return func() { cancel(); <-done }
}
