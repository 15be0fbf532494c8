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

// reserveFront takes the front port for the emulation's life, before any
// web tier starts: it checks that no other program holds it (a plain
// bind fails while any socket does; another program's SO_REUSEPORT socket
// of the same user would otherwise take a share of the connections
// unseen), picks a free one if none is configured, and keeps a socket
// bound there with SO_REUSEPORT but not listening. That socket gets no
// connections; it keeps the port from other programs, and from the
// ephemeral ports of this machine's own outgoing connections, which would
// otherwise keep the web tiers from binding it while they last.
func (m *machines) reserveFront() error {
	addr := net.JoinHostPort(m.cfg.WebHost, strconv.Itoa(m.cfg.WebPort))
	probe, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("the web tier's port %s is taken by another program: %w", addr, err)
	}
	at := *probe.Addr().(*net.TCPAddr)
	probe.Close()
	domain, sa := unix.AF_INET, unix.Sockaddr(&unix.SockaddrInet4{Port: at.Port})
	if ip4 := at.IP.To4(); ip4 != nil {
		copy(sa.(*unix.SockaddrInet4).Addr[:], ip4)
	} else {
		six := &unix.SockaddrInet6{Port: at.Port}
		copy(six.Addr[:], at.IP.To16())
		domain, sa = unix.AF_INET6, six
	}
	fd, err := unix.Socket(domain, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("reserving the web tier's port %d: %w", at.Port, err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
		unix.Close(fd)
		return fmt.Errorf("reserving the web tier's port %d: %w", at.Port, err)
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return fmt.Errorf("reserving the web tier's port %d: %w", at.Port, err)
	}
	m.mu.Lock()
	m.cfg.WebPort, m.front = at.Port, os.NewFile(uintptr(fd), "front reservation")
	m.mu.Unlock()
	return nil
}

// releaseFront gives the front port back.
func (m *machines) releaseFront() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.front != nil {
		m.front.Close()
		m.front = nil
	}
}

// frontListener opens a listening socket on the front port that shares
// it with the other web tiers' (SO_REUSEPORT).
func (m *machines) frontListener(ctx context.Context) (*os.File, error) {
	addr := net.JoinHostPort(m.cfg.WebHost, strconv.Itoa(m.webPort()))
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
