package frontend

import (
	"context"
	"time"

	"github.com/surgeml/surge/events"
)

// CodeDeadLettered is the error code of a request in the dead-letter
// queue: every delivery the queue allows ended without an answer, because
// the worker holding it died or hung each time. Workers never send it;
// the web tier concludes it. Uploading the same file again is likely to
// fail the same way, so it is answered 500, not 503.
const CodeDeadLettered events.ErrorCode = "dead_lettered"

func deadLettered(res events.Result) bool {
	return res.Error != nil && res.Error.Code == CodeDeadLettered
}

// watchDeadLetters reads the dead-letter queue until ctx ends and settles
// every request found there as failed, answering its waiting upload at
// once. Nothing is deleted: the messages stay for inspection, and each
// comes back after the queue's visibility timeout, so a web tier started
// later learns of them too.
func (s *Server) watchDeadLetters(ctx context.Context) {
	if s.DeadLetters == nil {
		return
	}
	backoff := events.Backoff{Min: 100 * time.Millisecond, Max: 30 * time.Second}
	for ctx.Err() == nil {
		msgs, err := s.DeadLetters.Receive(ctx, 10, 20*time.Second)
		for _, m := range msgs {
			s.deadLetter(m)
		}
		backoff.After(ctx, err, s.log, "reading the dead-letter queue")
	}
}

func (s *Server) deadLetter(m events.Message) {
	req, err := events.DecodeRequest(m.Body)
	if err != nil {
		// No request id, so no one to tell.
		s.log.Debug("unreadable message in the dead-letter queue", "message", m.ID, "err", err)
		return
	}
	res := events.Result{V: events.Version, ID: req.ID, Stem: req.Stem, Error: &events.Error{Code: CodeDeadLettered,
		Message: "dead_lettered: the workers were handed this request as many times as the queue allows, and each one stopped or hung " +
			"before answering; it is in the dead-letter queue"}}
	if !s.settle(res) {
		return
	}
	s.log.Warn("request dead-lettered: its workers died or hung on every delivery", "id", req.ID, "name", req.Name)
	s.waiters.deliver(res)
}
