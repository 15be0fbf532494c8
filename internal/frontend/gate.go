package frontend

import (
	"context"
	"sync"
)

// keyGate keeps two uploads with the same name but different bytes from
// being in flight together: the second would overwrite the first's input
// object before a worker read it. Uploads with the same bytes share the
// key freely, since either copy gives the same answer.
type keyGate struct {
	mu    sync.Mutex
	inUse map[string]*keyUse
}

type keyUse struct {
	sha      string
	holders  int
	released chan struct{}
}

func newKeyGate() *keyGate { return &keyGate{inUse: map[string]*keyUse{}} }

// acquire waits until key is free or held for the same content.
func (g *keyGate) acquire(ctx context.Context, key, sha string) error {
	for {
		g.mu.Lock()
		u := g.inUse[key]
		if u == nil {
			g.inUse[key] = &keyUse{sha: sha, holders: 1, released: make(chan struct{})}
			g.mu.Unlock()
			return nil
		}
		if u.sha == sha {
			u.holders++
			g.mu.Unlock()
			return nil
		}
		released := u.released
		g.mu.Unlock()
		select {
		case <-released:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (g *keyGate) release(key string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	u := g.inUse[key]
	if u.holders--; u.holders == 0 {
		delete(g.inUse, key)
		close(u.released)
	}
}
