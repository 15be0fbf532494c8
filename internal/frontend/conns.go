package frontend

import (
	"container/list"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// connReserve is how many descriptors the connection cap leaves for
// everything else the web tier opens: queue and table files, buckets,
// its own connections to AWS.
const connReserve = 512

// connLimit keeps the web tier's connections under a cap in all and one
// per client address, so that idle connections cannot take every
// descriptor and leave uploads unaccepted (issue 23, defect 6: 20,000
// idle keep-alive connections, and accept4 failed with "too many open
// files"). To make room it closes the connections that have gone longest
// without a request, the client's own first when it is that client that
// is over its cap; with none to close, it refuses the new one.
type connLimit struct {
	max, perClient           int
	fixedMax, fixedPerClient bool // given, not following the descriptor limit
	checked                  time.Time
	log                      *slog.Logger

	mu    sync.Mutex
	conns map[net.Conn]*connEntry
	// quiet holds connections that are not in a request (new, or idle
	// between requests), longest quiet first, in all and per client.
	quiet    *list.List
	byClient map[string]*clientConns

	evicted, refused atomic.Int64
}

type connEntry struct {
	conn   net.Conn
	client string
	// where the entry is in quiet and in its client's quiet list, while
	// it is quiet.
	all, own *list.Element
}

type clientConns struct {
	n     int
	quiet *list.List
}

// newConnLimit caps connections at total and perClient; 0 follows the
// descriptor limit (less connReserve; half of that for one client),
// looked at again each second, as it can be changed under a running
// process (prlimit).
func newConnLimit(total, perClient int, log *slog.Logger) *connLimit {
	l := &connLimit{max: total, perClient: perClient, log: log,
		conns: map[net.Conn]*connEntry{}, quiet: list.New(), byClient: map[string]*clientConns{}}
	l.fixedMax, l.fixedPerClient = total > 0, perClient > 0
	l.followLimit(time.Now())
	return l
}

// followLimit sets the caps not given from the descriptor limit. Go
// raises the soft limit to the hard one at start (Go 1.19): this is what
// it came to.
func (l *connLimit) followLimit(now time.Time) {
	l.checked = now
	if !l.fixedMax {
		var rl syscall.Rlimit
		l.max = 4096
		if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err == nil && rl.Cur > 2*connReserve {
			l.max = int(min(rl.Cur, 1<<20)) - connReserve
		}
	}
	if !l.fixedPerClient {
		l.perClient = max(1, l.max/2)
	}
}

// state is the http.Server's ConnState hook.
func (l *connLimit) state(c net.Conn, st http.ConnState) {
	switch st {
	case http.StateNew:
		for _, v := range l.add(c) {
			v.Close()
		}
	case http.StateActive:
		l.setQuiet(c, false)
	case http.StateIdle:
		l.setQuiet(c, true)
	case http.StateHijacked, http.StateClosed:
		l.mu.Lock()
		l.forget(l.conns[c])
		l.mu.Unlock()
	}
}

// add counts a new connection and returns the connections to close to
// keep within the caps: the longest quiet ones, or c itself.
func (l *connLimit) add(c net.Conn) []net.Conn {
	client := c.RemoteAddr().String()
	if host, _, err := net.SplitHostPort(client); err == nil {
		client = host
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if now := time.Now(); now.Sub(l.checked) > time.Second {
		l.followLimit(now)
	}
	cc := l.byClient[client]
	if cc == nil {
		cc = &clientConns{quiet: list.New()}
		l.byClient[client] = cc
	}
	e := &connEntry{conn: c, client: client}
	l.conns[c] = e
	cc.n++
	var closing []net.Conn
	for cc.n > l.perClient || len(l.conns) > l.max {
		from := l.quiet
		if cc.n > l.perClient {
			from = cc.quiet
		}
		oldest := from.Front()
		if oldest == nil {
			l.forget(e)
			l.refused.Add(1)
			return append(closing, c)
		}
		v := oldest.Value.(*connEntry)
		l.forget(v)
		l.evicted.Add(1)
		closing = append(closing, v.conn)
	}
	// New, it is quiet until its first request arrives.
	e.all, e.own = l.quiet.PushBack(e), cc.quiet.PushBack(e)
	if n := l.evicted.Load(); len(closing) > 0 && (n == int64(len(closing)) || n/1000 != (n-int64(len(closing)))/1000) {
		l.log.Warn("at the connection cap: closing the connections longest without a request", "open", len(l.conns), "max", l.max, "per_client", l.perClient, "closed_so_far", l.evicted.Load())
	}
	return closing
}

func (l *connLimit) setQuiet(c net.Conn, quiet bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.conns[c]
	if e == nil {
		return
	}
	l.unquiet(e)
	if quiet {
		e.all, e.own = l.quiet.PushBack(e), l.byClient[e.client].quiet.PushBack(e)
	}
}

func (l *connLimit) unquiet(e *connEntry) {
	if e.all != nil {
		l.quiet.Remove(e.all)
		l.byClient[e.client].quiet.Remove(e.own)
		e.all, e.own = nil, nil
	}
}

// forget stops counting e, which is being closed.
func (l *connLimit) forget(e *connEntry) {
	if e == nil || l.conns[e.conn] != e {
		return
	}
	l.unquiet(e)
	delete(l.conns, e.conn)
	cc := l.byClient[e.client]
	if cc.n--; cc.n == 0 {
		delete(l.byClient, e.client)
	}
}
