package frontend

import (
	"errors"
	"sync"
	"syscall"
	"time"
)

// storeHealth remembers the last failure to store an upload and the last
// success, for readiness: an instance whose uploads cannot be stored (a
// full disk, a bucket it may not write) should get none for a while.
type storeHealth struct {
	mu       sync.Mutex
	failedAt time.Time
	reason   string
	storedAt time.Time
}

func (h *storeHealth) observe(now time.Time, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err == nil {
		h.storedAt = now
		return
	}
	h.failedAt = now
	// Shown to anyone who asks: no paths or endpoints (the log has the
	// error itself).
	h.reason = "the log has the error"
	if errors.Is(err, syscall.ENOSPC) {
		h.reason = "no space left on the disk"
	}
}

// failing says whether a store failed within hold of now with none stored
// since, how long ago, and why.
func (h *storeHealth) failing(now time.Time, hold time.Duration) (time.Duration, string, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.failedAt.IsZero() || h.storedAt.After(h.failedAt) || now.Sub(h.failedAt) > hold {
		return 0, "", false
	}
	return now.Sub(h.failedAt), h.reason, true
}
