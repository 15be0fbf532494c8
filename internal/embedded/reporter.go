package embedded

import (
	"encoding/json"
	"os"
	"sync"
	"time"
)

// status is what a worker reports about itself.
type status struct {
	PID   int  `json:"pid"`
	Ready bool `json:"ready"` // model loaded, taking work
	Held  int  `json:"held"`  // messages held right now
	// MetricsAddr is where the worker serves GET /metrics, if it does:
	// a local fleet's workers listen on ports of their own choosing.
	MetricsAddr string `json:"metrics_addr,omitempty"`
}

func readStatus(path string) (status, error) {
	var s status
	data, err := os.ReadFile(path)
	if err != nil {
		return s, err
	}
	return s, json.Unmarshal(data, &s)
}

// Holding reports whether the worker reporting to path holds a message.
func Holding(path string) bool {
	s, err := readStatus(path)
	return err == nil && s.Held > 0
}

// idleAfter is how long a worker must hold nothing before it reports
// idle: a busy worker between two messages is not idle, and not writing on
// every message keeps the file quiet under load.
const idleAfter = 100 * time.Millisecond

// Reporter is the worker's side of the status file. A Reporter for an
// empty path does nothing, so workers run the same way outside a fleet.
type Reporter struct {
	path string

	mu      sync.Mutex
	cur     status
	written status
	timer   *time.Timer
}

// NewReporter reports to path (from EnvStatusFile).
func NewReporter(path string) *Reporter {
	return &Reporter{path: path, cur: status{PID: os.Getpid()}, written: status{Held: -1}}
}

// Ready says the worker has loaded its model and takes work.
func (r *Reporter) Ready() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cur.Ready = true
	r.flushLocked()
}

// Metrics records where the worker serves GET /metrics, for the fleet
// to show in its instances (events.Instance.MetricsAddr).
func (r *Reporter) Metrics(addr string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cur.MetricsAddr = addr
	r.flushLocked()
}

// Held records how many messages the worker holds. Becoming busy is
// reported at once; becoming idle after idleAfter.
func (r *Reporter) Held(n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cur.Held = n
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
	if n > 0 {
		if r.written.Held <= 0 {
			r.flushLocked()
		}
		return
	}
	r.timer = time.AfterFunc(idleAfter, func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.cur.Held == 0 {
			r.flushLocked()
		}
	})
}

func (r *Reporter) flushLocked() {
	if r.path == "" || r.cur == r.written {
		return
	}
	data, _ := json.Marshal(r.cur)
	// No fsync: the file describes a live process and dies with it.
	tmp := r.path + ".tmp"
	if os.WriteFile(tmp, data, 0o640) == nil && os.Rename(tmp, r.path) == nil {
		r.written = r.cur
	}
}
