package emulate

import (
	"net"
	"strconv"
	"sync"
	"testing"
	"time"
)

// The front door: the port is reserved for the emulation, so no other
// program binds it and a second emulation is refused; two web tiers'
// sockets share it, the kernel spreading connections over both; the
// reservation itself takes no connection (with no web tier listening a
// client is refused at once, not left waiting), and is given back at the
// end.
func TestFrontDoor(t *testing.T) {
	m := &machines{cfg: Config{WebHost: "127.0.0.1"}}
	if err := m.reserveFront(); err != nil {
		t.Fatal(err)
	}
	defer m.releaseFront()
	port := m.webPort()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if ln, err := net.Listen("tcp", addr); err == nil {
		ln.Close()
		t.Fatalf("another program could bind the front port %d", port)
	}
	other := &machines{cfg: Config{WebHost: "127.0.0.1", WebPort: port}}
	if err := other.reserveFront(); err == nil {
		other.releaseFront()
		t.Fatal("a second emulation took the same front port")
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatal("the reservation took a connection")
	}

	// Two web tiers.
	var listeners []net.Listener
	accepted := make([]int, 2)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range 2 {
		f, err := m.frontListener(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.FileListener(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		listeners = append(listeners, ln)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				accepted[i]++
				mu.Unlock()
				c.Close()
			}
		}()
	}
	const conns = 64
	for range conns {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		total := accepted[0] + accepted[1]
		mu.Unlock()
		if total == conns || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, ln := range listeners {
		ln.Close()
	}
	wg.Wait()
	if accepted[0]+accepted[1] != conns || accepted[0] == 0 || accepted[1] == 0 {
		t.Errorf("the two web tiers accepted %v of %d connections; want all, some each", accepted, conns)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Error("with no web tier listening a connection was taken")
	}

	m.releaseFront()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("the front port is not given back: %v", err)
	}
	ln.Close()
}
