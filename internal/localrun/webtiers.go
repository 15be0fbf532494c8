// This file keeps a local system's web tiers running: one, as the
// course's single web instance, or several on one port behind the
// kernel's SO_REUSEPORT, which spreads new connections over them as a
// load balancer spreads clients over web instances. Each of several runs
// under an instance id of its own, so it reads its own reply queue, and
// one that dies is replaced under a new id.

package localrun

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/surgeml/surge/internal/embedded"
)

// webTiers are a system's web tiers.
type webTiers struct {
	spec webSpec
	port int
	logs string
	log  *slog.Logger
	// ctx ends when the system stops: no tier is replaced after that.
	ctx    context.Context
	cancel context.CancelFunc
	keeper sync.WaitGroup

	mu    sync.Mutex
	tiers []*WebTier // by slot

	// done is closed when the tiers end on their own: the one tier of a
	// system that runs one exited, or one of several kept dying.
	done    chan struct{}
	endOnce sync.Once
	exited  error
}

// quickDeath is how soon after its start a tier's death counts towards
// giving up its slot, and maxQuickDeaths how many in a row do: a tier
// that cannot stay up is not replaced for ever.
const (
	quickDeath     = 10 * time.Second
	maxQuickDeaths = 5
)

// startWebTiers starts n web tiers on host:port (port 0 takes a free
// one). With n of 1 the tier runs without an instance id, as the
// course's single web tier reads the shared response queue, and the
// system ends when it exits, as it always did.
func startWebTiers(ctx context.Context, spec webSpec, n, port int, logs string, log *slog.Logger) (*webTiers, error) {
	w := &webTiers{spec: spec, port: port, logs: logs, log: log, done: make(chan struct{})}
	w.ctx, w.cancel = context.WithCancel(context.WithoutCancel(ctx))
	if n <= 1 {
		ln, port, err := listenSocket(ctx, spec.host, port, false)
		if err != nil {
			return nil, err
		}
		t, err := spec.start(ctx, ln, port, "", filepath.Join(logs, "webtier.log"))
		if err != nil {
			return nil, err
		}
		w.tiers = []*WebTier{t}
		go func() {
			<-t.Done()
			w.end(nil)
		}()
		return w, nil
	}
	w.tiers = make([]*WebTier, n)
	for slot := range n {
		t, err := w.startSlot(ctx, slot)
		if err != nil {
			w.stop(webExitMargin)
			return nil, err
		}
		w.tiers[slot] = t
		// The first socket, on a free port if asked for port 0, fixes
		// the port for the rest.
		w.port = t.port
	}
	for slot := range n {
		w.keeper.Go(func() { w.keep(slot) })
	}
	return w, nil
}

// startSlot starts a web tier for slot (from 0) under a new id, on a
// socket of its own in the port's group.
func (w *webTiers) startSlot(ctx context.Context, slot int) (*WebTier, error) {
	id, err := w.newID(slot)
	if err != nil {
		return nil, err
	}
	ln, port, err := listenSocket(ctx, w.spec.host, w.port, true)
	if err != nil {
		return nil, err
	}
	t, err := w.spec.start(ctx, ln, port, id, filepath.Join(w.logs, fmt.Sprintf("webtier-%d.log", slot+1)))
	if err != nil {
		return nil, err
	}
	w.log.Info("web tier started", "tier", slot+1, "id", id, "pid", t.PID(), "log", t.Log)
	return t, nil
}

// newID is an instance id for slot that no web tier has had on this data
// directory: a tier's lock file outlives it, and a reply queue named
// after a dead tier must never be read again by a live one.
func (w *webTiers) newID(slot int) (string, error) {
	for {
		id := fmt.Sprintf("local-%d-%x", slot+1, randomBytes(3))
		_, err := os.Stat(filepath.Join(w.spec.data, embedded.WebTierLock(id)))
		if errors.Is(err, fs.ErrNotExist) {
			return id, nil
		}
		if err != nil {
			return "", fmt.Errorf("choosing a web tier id: %w", err)
		}
	}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// keep replaces slot's tier whenever it dies, until the system stops.
func (w *webTiers) keep(slot int) {
	quick := 0
	for {
		t := w.tier(slot)
		select {
		case <-t.Done():
		case <-w.ctx.Done():
			return
		}
		if w.ctx.Err() != nil {
			return
		}
		if time.Since(t.started) < quickDeath {
			quick++
		} else {
			quick = 0
		}
		if quick >= maxQuickDeaths {
			w.end(fmt.Errorf("web tier %d died %d times within %v of its start (see %s): %v", slot+1, quick, quickDeath, t.Log, t.err))
			return
		}
		w.log.Warn("web tier exited; starting another in its place", "tier", slot+1, "id", t.ID, "err", t.err, "log", t.Log)
		next, err := w.startSlot(w.ctx, slot)
		if err != nil {
			if w.ctx.Err() == nil {
				w.end(fmt.Errorf("starting web tier %d again: %w", slot+1, err))
			}
			return
		}
		w.mu.Lock()
		w.tiers[slot] = next
		w.mu.Unlock()
	}
}

func (w *webTiers) tier(slot int) *WebTier {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.tiers[slot]
}

// current lists the tiers now serving, by slot.
func (w *webTiers) current() []*WebTier {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]*WebTier(nil), w.tiers...)
}

func (w *webTiers) end(err error) {
	w.endOnce.Do(func() {
		w.exited = err
		close(w.done)
	})
}

// peakRSS is the largest peak resident memory of the tiers serving now.
func (w *webTiers) peakRSS() int64 {
	var peak int64
	for _, t := range w.current() {
		peak = max(peak, t.PeakRSS())
	}
	return peak
}

// hurry cuts every tier's drain short.
func (w *webTiers) hurry() {
	for _, t := range w.current() {
		t.Hurry()
	}
}

// stop ends the replacing first, so that no tier started meanwhile is
// left running, then stops every tier at once: each drains its own
// uploads, for up to grace.
func (w *webTiers) stop(grace time.Duration) error {
	w.cancel()
	w.keeper.Wait()
	tiers := w.current()
	errs := make([]error, len(tiers))
	var wg sync.WaitGroup
	for i, t := range tiers {
		if t != nil {
			wg.Go(func() { errs[i] = t.Stop(grace) })
		}
	}
	wg.Wait()
	return errors.Join(errs...)
}
