package frontend_test

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/surgeml/surge/internal/frontend"
	"github.com/surgeml/surge/internal/testenv"
)

// idleConn opens a connection, makes one keep-alive request on it and
// leaves it open, idle.
func idleConn(t *testing.T, url string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	r := bufio.NewReader(c)
	if code := livez(t, c, r); code != 200 {
		t.Fatalf("GET /livez: %d", code)
	}
	return c, r
}

func livez(t *testing.T, c net.Conn, r *bufio.Reader) int {
	t.Helper()
	fmt.Fprint(c, "GET /livez HTTP/1.1\r\nHost: surge\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	res, err := http.ReadResponse(r, nil)
	if err != nil {
		return 0
	}
	res.Body.Close()
	return res.StatusCode
}

// At its cap, the web tier closes the connections that have gone longest
// without a request and takes the new one: idle connections cannot lock
// uploads out.
func TestConnectionCap(t *testing.T) {
	s := newSite(t, frontend.Config{MaxConns: 40, MaxConnsPerClient: 30})
	s.worker(t)
	var conns []net.Conn
	var readers []*bufio.Reader
	for range 100 {
		c, r := idleConn(t, s.url)
		conns, readers = append(conns, c), append(readers, r)
	}
	start := time.Now()
	if r := upload(t, s.url, "inputFile", "dog.jpg", testenv.Photo(t, "dog.jpg")); r.status != 200 || time.Since(start) > 2*time.Second {
		t.Fatalf("upload beside 100 idle connections: %d %q in %v", r.status, r.body, time.Since(start))
	}
	// The oldest were closed, the newest still serve.
	if code := livez(t, conns[0], readers[0]); code != 0 {
		t.Errorf("the oldest idle connection still answers (%d); want it closed", code)
	}
	if code := livez(t, conns[99], readers[99]); code != 200 {
		t.Errorf("the newest idle connection: %d, want 200", code)
	}
}
