package webapi

import (
	"context"
	"sync"
	"time"

	"github.com/surgeml/surge/events"
	"github.com/surgeml/surge/internal/queue"
	"github.com/surgeml/surge/internal/retry"
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

// dispatch drains the response queue until ctx ends: every result is
// recorded for GET /results/{id}, handed to its waiting upload if there is
// one, and deleted.
func (s *Server) dispatch(ctx context.Context) {
	backoff := retry.Backoff{Min: 100 * time.Millisecond, Max: 5 * time.Second}
	for ctx.Err() == nil {
		msgs, err := s.Responses.Receive(ctx, 10, 20*time.Second)
		s.route(context.WithoutCancel(ctx), msgs)
		backoff.After(ctx, err, s.log, "receiving results")
	}
}

// route records and delivers received results, then deletes them.
func (s *Server) route(ctx context.Context, msgs []queue.Message) {
	for _, m := range msgs {
		res, err := events.DecodeResult(m.Body)
		if err != nil {
			// Nobody can be answered with it; keeping it would only block
			// the queue.
			s.log.Error("dropping unreadable result", "message", m.ID, "body", string(m.Body), "err", err)
		} else {
			s.cache.learn(ctx, res)
			s.record(res)
		}
		if err := s.Responses.Delete(ctx, m.Receipt); err != nil {
			s.log.Error("deleting result", "id", res.ID, "err", err)
		}
	}
}

func (s *Server) record(res events.Result) {
	// The first answer wins; a redelivered request may be answered again.
	if j, ok := s.jobs.Peek(res.ID); !ok || j.result == nil {
		s.jobs.Add(res.ID, job{stem: res.Stem, result: &res})
	}
	if !s.waiters.deliver(res) {
		s.log.Info("result for no waiting upload; kept for GET /results", "id", res.ID)
	}
}
