package frontend

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/surgeml/surge/events"
)

// waiters routes results to the uploads waiting for them, by request id.
type waiters struct {
	mu sync.Mutex
	m  map[string]chan events.Result
}

func newWaiters() *waiters { return &waiters{m: map[string]chan events.Result{}} }

func (w *waiters) add(id string) chan events.Result {
	ch := make(chan events.Result, 1)
	w.mu.Lock()
	w.m[id] = ch
	w.mu.Unlock()
	return ch
}

func (w *waiters) remove(id string) {
	w.mu.Lock()
	delete(w.m, id)
	w.mu.Unlock()
}

// deliver hands r to its waiter, if it is still waiting. A redelivered
// request can be answered twice; the second answer finds no waiter.
func (w *waiters) deliver(r events.Result) bool {
	w.mu.Lock()
	ch, ok := w.m[r.ID]
	delete(w.m, r.ID)
	w.mu.Unlock()
	if ok {
		ch <- r
	}
	return ok
}

func (w *waiters) len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.m)
}

// dispatch drains the response queue until ctx ends, with
// Config.Receivers long polls side by side: every result is recorded for
// GET /results/{id}, handed to its waiting upload if there is one, and
// deleted. With a reply queue of its own, the web tier reads that with
// Config.Receivers polls and the shared queue, which then carries only
// what could not reach its instance's queue, with a few.
func (s *Server) dispatch(ctx context.Context) {
	type source struct {
		q      Responses
		shared bool
		polls  int
	}
	queues := []source{{s.Responses, true, s.cfg.Receivers}}
	if s.Replies != nil {
		queues = []source{{s.Responses, true, sharedReceivers}, {s.Replies, false, s.cfg.Receivers}}
	}
	var receivers sync.WaitGroup
	var batchers []*events.Batcher[string]
	for _, q := range queues {
		deletes := events.NewBatcher(context.WithoutCancel(ctx), q.q.DeleteBatch, deletesInFlight)
		batchers = append(batchers, deletes)
		for range q.polls {
			receivers.Go(func() { s.receive(ctx, q.q, q.shared, deletes) })
		}
	}
	receivers.Wait()
	for _, b := range batchers {
		b.Close()
	}
}

// sharedReceivers poll the shared response queue beside a reply queue of
// the web tier's own: results reach it only when their queue was gone.
const sharedReceivers = 2

func (s *Server) receive(ctx context.Context, q Responses, shared bool, deletes *events.Batcher[string]) {
	backoff := events.Backoff{Min: 100 * time.Millisecond, Max: 5 * time.Second}
	for ctx.Err() == nil {
		msgs, err := q.Receive(ctx, events.MaxBatch, 20*time.Second)
		s.route(context.WithoutCancel(ctx), msgs, shared, deletes)
		backoff.After(ctx, err, s.log, "receiving results")
	}
}

// route records and delivers received results, and leaves them to be
// deleted in batches: the receiver polls again at once, without waiting
// for the round trip that deletes what it routed. A result from the
// shared queue for another web instance is passed on to that instance's
// queue if it is still there.
func (s *Server) route(ctx context.Context, msgs []events.Message, shared bool, deletes *events.Batcher[string]) {
	for _, m := range msgs {
		id := ""
		if res, err := events.DecodeResult(m.Body); err != nil {
			// Nobody can be answered with it; keeping it would only block
			// the queue.
			s.log.Error("dropping unreadable result", "message", m.ID, "body", string(m.Body), "err", err)
		} else if shared && s.passOn(ctx, res, m.Body) {
			id = res.ID
		} else {
			id = res.ID
			if !res.Answered.IsZero() {
				wait := max(time.Since(res.Answered), 0)
				s.queueWaits.add(wait)
				s.metrics.waited(wait)
			}
			s.cache.learn(ctx, res)
			s.record(res)
			if shared && res.ReplyTo != s.ReplyTo {
				s.keep(ctx, res)
			}
		}
		deletes.Go(m.Receipt, func(err error) {
			// A result left behind comes back and is routed again, which
			// the first answer already settled: noise, not harm.
			if err != nil {
				s.log.Error("deleting result", "id", id, "err", err)
			}
		})
	}
}

// passOn sends a result from the shared queue to the reply queue it names,
// unless it is this instance's or the queue is gone, and reports whether
// it did.
func (s *Server) passOn(ctx context.Context, res events.Result, body []byte) bool {
	if res.ReplyTo == "" || res.ReplyTo == s.ReplyTo || s.Others == nil {
		return false
	}
	if _, ok := s.jobs.Peek(res.ID); ok {
		return false // it is for this instance after all (a restart kept the id)
	}
	q, err := s.Others.Open(ctx, res.ReplyTo)
	if err == nil {
		err = q.Send(ctx, body)
	}
	if err != nil {
		if !errors.Is(err, events.ErrNoQueue) {
			s.log.Warn("could not pass a result on to its web instance; keeping it here", "id", res.ID, "queue", res.ReplyTo, "err", err)
		}
		return false
	}
	s.log.Debug("passed a result on to its web instance", "id", res.ID, "queue", res.ReplyTo)
	return true
}

// keep records by request id a result whose web instance is gone and
// that its worker could not record, so that any instance can still answer
// GET /results/{id} with it.
func (s *Server) keep(ctx context.Context, res events.Result) {
	if s.Records == nil || res.Unrecorded == "" || res.Error != nil {
		return
	}
	err := s.Records.Put(ctx, events.Item{Name: events.RequestKey(res.ID), Stem: res.Stem, Label: res.Label,
		Score: res.Score, Model: res.Model, Time: s.now()})
	if err != nil {
		s.log.Error("recording a result whose web instance is gone", "id", res.ID, "err", err)
	}
}

// record keeps a worker's result for GET /results/{id} and hands it to
// the upload waiting for it, if any.
func (s *Server) record(res events.Result) {
	kept := s.settle(res)
	if s.waiters.deliver(res) {
		return
	}
	if kept {
		s.jobsMu.Lock()
		if j, ok := s.jobs.Peek(res.ID); ok {
			j.unclaimed = true
			s.jobs.Add(res.ID, j)
		}
		s.jobsMu.Unlock()
	}
	s.log.Info("result for no waiting upload; kept for GET /results", "id", res.ID)
}

// settle makes res the known outcome of its request unless a better one
// is known: the first answer from a worker wins (a redelivered request
// can be answered twice), and any worker's answer replaces the web tier's
// own dead-letter verdict. It reports whether res was kept.
func (s *Server) settle(res events.Result) bool {
	s.jobsMu.Lock()
	defer s.jobsMu.Unlock()
	j, ok := s.jobs.Peek(res.ID)
	if ok && j.result != nil && (!deadLettered(*j.result) || deadLettered(res)) {
		return false
	}
	if !ok {
		j = job{stem: res.Stem, since: s.now()}
	}
	j.result = &res
	s.jobs.Add(res.ID, j)
	return true
}

// expect notes a request just queued, for GET /results/{id}.
func (s *Server) expect(id, stem string) {
	s.jobs.Add(id, job{stem: stem, since: s.now()})
}

// await waits for the answer to the queued request id.
func (s *Server) await(ctx context.Context, id string, answer <-chan events.Result) (events.Result, error) {
	timer := time.NewTimer(s.cfg.ResultTimeout)
	defer timer.Stop()
	select {
	case res := <-answer:
		return res, nil
	case <-timer.C:
		return events.Result{}, &httpError{
			status: http.StatusGatewayTimeout,
			msg:    fmt.Sprintf("no result within %v; the request is still queued: GET /results/%s later", s.cfg.ResultTimeout, id),
		}
	case <-ctx.Done():
		// The client left; the result will still be kept for /results.
		return events.Result{}, fail(statusClientGone, "client went away: %v", context.Cause(ctx))
	case <-s.drainOver:
		// Results stopped being routed before the drain ended, so one
		// routed to this upload is already here.
		select {
		case res := <-answer:
			return res, nil
		default:
		}
		e := fail(http.StatusServiceUnavailable, "the request is queued but this server is stopping before its answer came: GET /results/%s later", id)
		e.retryAfter, e.code = stoppingRetryAfter, codeStopping
		return events.Result{}, e
	}
}

// stoppingRetryAfter is a guess at how soon a stopped web tier is back:
// systemd restarts it within seconds; a person restarting surge run takes
// longer, and a client that comes back early only asks again.
const stoppingRetryAfter = 10 * time.Second

// codeStopping marks the 503 of an upload still waiting when a stop's
// drain timeout ends.
const codeStopping = "stopping"

// deliveryWindow is how many of the latest results /status's delivery
// figures cover.
const deliveryWindow = 1000

// queueWaits keeps how long the latest deliveryWindow results waited in
// the response queue, from their worker's send to a receiver taking them:
// a web tier that keeps up takes each within about one round trip.
type queueWaits struct {
	mu    sync.Mutex
	waits [deliveryWindow]time.Duration
	next  int
	full  bool
}

func (q *queueWaits) add(d time.Duration) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.waits[q.next] = d
	q.next = (q.next + 1) % len(q.waits)
	q.full = q.full || q.next == 0
}

func (q *queueWaits) status() DeliveryStatus {
	q.mu.Lock()
	waits := slices.Clone(q.waits[:q.next])
	if q.full {
		waits = slices.Clone(q.waits[:])
	}
	q.mu.Unlock()
	if len(waits) == 0 {
		return DeliveryStatus{}
	}
	slices.Sort(waits)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	at := func(p float64) float64 { return ms(waits[min(int(p*float64(len(waits))), len(waits)-1)]) }
	return DeliveryStatus{Results: len(waits), P50Ms: at(0.50), P99Ms: at(0.99), MaxMs: ms(waits[len(waits)-1])}
}
