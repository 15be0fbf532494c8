package frontend

import (
	"context"
	"errors"
	"fmt"
	"github.com/google/uuid"
	"net/http"
	"time"

	"github.com/surgeml/surge/events"
)

// Status is the body of GET /status.
type Status struct {
	RequestQueue  QueueStatus `json:"request_queue"`
	DeadLetters   QueueStatus `json:"dead_letters"` // requests that failed for good
	ResponseQueue QueueStatus `json:"response_queue"`
	// ReplyQueue is this web instance's own, when it is one of several.
	ReplyQueue *NamedQueueStatus `json:"reply_queue,omitempty"`
	// Delivery is how long results waited in the response queue.
	Delivery     DeliveryStatus `json:"delivery"`
	Fleet        FleetStatus    `json:"fleet"`
	Waiting      int            `json:"waiting"` // uploads holding a connection open
	ResultsTable CacheStatus    `json:"results_table"`

	Uploads UploadsStatus `json:"uploads"`
}

// UploadsStatus is the uploads being taken in, and the memory budget they
// share.
type UploadsStatus struct {
	Reading int `json:"reading"` // receiving their body
	// Slow are reading uploads behind the pace (Config.BodyMinBytes per
	// BodyWindow): they are cut with 408 unless they catch up.
	Slow             int   `json:"slow"`
	WaitingForMemory int   `json:"waiting_for_memory"` // reading uploads waiting for room in the budget
	MemoryHeld       int64 `json:"memory_held"`        // bytes of uploads held now
	MemoryPeak       int64 `json:"memory_peak"`        // the most held at once since the start
	MemoryBudget     int64 `json:"memory_budget"`
}

// DeliveryStatus is how long the latest results routed (up to
// deliveryWindow) waited in the response queue, from the worker's send,
// by its clock, to a receiver taking them: a backlog shows as waits far
// beyond a round trip.
type DeliveryStatus struct {
	Results int     `json:"results"`
	P50Ms   float64 `json:"p50_ms"`
	P99Ms   float64 `json:"p99_ms"`
	MaxMs   float64 `json:"max_ms"`
}

// QueueStatus is a queue's approximate counts, or why they are unknown.
type QueueStatus struct {
	events.Counts
	Error string `json:"error,omitempty"`
}

// NamedQueueStatus is a queue's counts with its name.
type NamedQueueStatus struct {
	Name string `json:"name"`
	QueueStatus
}

// FleetStatus is the worker fleet: Desired is what the scaling policy asks
// for at the current backlog; Running counts every live worker, draining
// ones included.
type FleetStatus struct {
	Desired   int               `json:"desired"`
	Running   int               `json:"running"`
	Draining  int               `json:"draining"`
	Max       int               `json:"max"`
	Instances []events.Instance `json:"instances"`
	Error     string            `json:"error,omitempty"`
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	writeJSON(w, http.StatusOK, s.currentStatus(ctx))
}

// currentStatus asks the queues and the fleet for their state now.
func (s *Server) currentStatus(ctx context.Context) Status {
	var st Status
	st.Waiting = s.waiters.len()
	st.Uploads = s.uploadsStatus()
	st.ResultsTable = s.cache.status()
	st.Delivery = s.queueWaits.status()
	st.RequestQueue = queueStatus(ctx, s.Requests.Counts)
	st.ResponseQueue = queueStatus(ctx, s.Responses.Counts)
	if s.Replies != nil {
		st.ReplyQueue = &NamedQueueStatus{Name: s.ReplyTo, QueueStatus: queueStatus(ctx, s.Replies.Counts)}
	}
	if s.DeadLetters != nil {
		st.DeadLetters = queueStatus(ctx, s.DeadLetters.Counts)
	}
	st.Fleet.Max = s.cfg.MaxWorkers
	st.Fleet.Desired = events.DesiredWorkers(st.RequestQueue.Backlog(), s.cfg.MinWorkers, s.cfg.MaxWorkers)
	st.Fleet.Instances = []events.Instance{}
	if instances, err := s.Fleet.List(ctx); err != nil {
		st.Fleet.Error = err.Error()
	} else {
		st.Fleet.Instances = instances
		st.Fleet.Running = len(instances)
		for _, in := range instances {
			if in.State == events.Draining {
				st.Fleet.Draining++
			}
		}
	}
	return st
}

func queueStatus(ctx context.Context, counts func(context.Context) (events.Counts, error)) QueueStatus {
	c, err := counts(ctx)
	if err != nil {
		return QueueStatus{Error: err.Error()}
	}
	return QueueStatus{Counts: c}
}

// live answers as long as the process serves HTTP: whether to restart it.
func (s *Server) live(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write([]byte("ok\n"))
}

// ready answers whether uploads can be taken now, and if not why: whether
// to send this instance uploads (GET /readyz, and /healthz, which the
// stack's creation signal waits for).
func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.readiness(ctx); err != nil {
		s.writeError(w, r, unavailable("not ready: %v", err), "")
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write([]byte("ok\n"))
}

// readiness is nil when the request queue answers, the input bucket has
// room for an upload (if it is a disk), and no upload has failed to be
// stored within ReadyHold without one stored since.
func (s *Server) readiness(ctx context.Context) error {
	if _, err := s.Requests.Counts(ctx); err != nil {
		return errors.New("the request queue is unavailable")
	}
	if disk, ok := s.Inputs.(interface{ FreeBytes() (int64, error) }); ok {
		free, err := disk.FreeBytes()
		if err != nil {
			s.log.Error("reading the input bucket's free space", "err", err)
			return errors.New("the input bucket's free space cannot be read")
		}
		if free < s.cfg.MinFreeBytes {
			return fmt.Errorf("the input bucket's disk has %d KB free, under the %d KB an upload may need", free>>10, s.cfg.MinFreeBytes>>10)
		}
	}
	if ago, reason, failing := s.storing.failing(s.now(), s.cfg.ReadyHold); failing {
		return fmt.Errorf("storing an upload failed %v ago (%s)", ago.Round(time.Second), reason)
	}
	return nil
}

// result answers GET /results/{id}: the answer once known, 202 while the
// request is still being worked on, 404 for ids this web tier never saw.
func (s *Server) result(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !isRequestID(id) {
		// Not echoed: whatever was sent, at whatever length.
		s.writeError(w, r, fail(http.StatusBadRequest, "not a request id: ids are UUIDs, as uploads answer them"), "")
		return
	}
	w.Header().Set("X-Request-Id", id)
	j, ok := s.jobs.Get(id)
	if !ok {
		j, ok = s.recorded(r.Context(), id)
	}
	switch {
	case !ok:
		s.writeError(w, r, fail(http.StatusNotFound, "no request %s (results are kept for %v)", id, s.cfg.ResultsTTL), id)
	case j.result == nil:
		w.Header().Set("Retry-After", "1")
		if wantsJSON(r) {
			writeJSON(w, http.StatusAccepted, map[string]string{"id": id, "stem": j.stem, "state": "pending"})
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusAccepted)
		w.Write([]byte("pending\n"))
	case j.result.Error != nil:
		s.writeError(w, r, resultError(*j.result), id)
	default:
		s.writeResult(w, r, *j.result, j.cached)
	}
}

// recorded finds the answer a worker recorded by request id, for a
// request another web instance queued (one of several, or one that is
// gone).
func (s *Server) recorded(ctx context.Context, id string) (job, bool) {
	if s.Records == nil || s.Replies == nil {
		return job{}, false
	}
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	it, err := s.Records.Get(ctx, events.RequestKey(id))
	if err != nil || it.Label == "" {
		return job{}, false
	}
	res := events.Result{V: events.Version, ID: id, Stem: it.Stem, Label: it.Label, Score: it.Score, Model: it.Model}
	return job{stem: it.Stem, result: &res, cached: true}, true
}

// isRequestID says whether id has the form upload gives ids
// (uuid.NewString: 36 characters, lower-case hex and hyphens).
func isRequestID(id string) bool {
	if len(id) != 36 {
		return false
	}
	u, err := uuid.Parse(id)
	return err == nil && u.String() == id
}
