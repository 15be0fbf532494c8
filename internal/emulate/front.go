package emulate

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// The front door. On AWS clients reach the web tier through an Elastic IP
// on the one web instance, or through the load balancer in front of a
// group of them; here both are one port of this machine (Config.WebHost,
// WebPort). The emulator opens each web tier's listening socket itself,
// bound to that port with SO_REUSEPORT, and hands it to the process
// (-listen-fd, as systemd's socket activation would): the kernel then
// spreads new connections over every web tier listening there, and a web
// tier that stops listening (its drain) or dies drops out of the group.
// No proxy stands between the client and the web tier. What the kernel
// does not do is the load balancer's health checks: a web tier that
// listens but is not ready still takes its share of connections.

// listenFDEnv is the web tier's -listen-fd flag as a variable
// (config.Parse); the socket is the child's first extra file, fd 3.
const (
	listenFDEnv = "SURGE_LISTEN_FD"
	listenFD    = 3
)

// frontListener opens a listening socket on the front port that shares
// it with the other web tiers' (SO_REUSEPORT). The first one checks that
// nothing else holds the port: a socket of another program bound with
// SO_REUSEPORT by the same user would otherwise silently take a share of
// the connections.
func (m *machines) frontListener(ctx context.Context) (*os.File, error) {
	port, err := m.webPort()
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort(m.cfg.WebHost, strconv.Itoa(port))
	m.mu.Lock()
	checked := m.frontChecked
	m.mu.Unlock()
	if !checked {
		// A plain bind fails while any socket holds the port.
		probe, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("the web tier's port %s is taken by another program: %w", addr, err)
		}
		probe.Close()
		m.mu.Lock()
		m.frontChecked = true
		m.mu.Unlock()
	}
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		}); err != nil {
			return err
		}
		return serr
	}}
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("opening the web tier's port %s (SO_REUSEPORT): %w", addr, err)
	}
	// The process gets a duplicate; the emulator keeps none, or the
	// kernel would go on queueing connections for a socket no one
	// accepts on once the web tier is gone.
	f, err := ln.(*net.TCPListener).File()
	ln.Close()
	if err != nil {
		return nil, fmt.Errorf("handing over the web tier's socket: %w", err)
	}
	return f, nil
}
