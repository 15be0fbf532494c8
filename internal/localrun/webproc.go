// This file runs the web tier binary as a child process, on a socket
// the parent binds first: a port in use is reported at once, and port 0
// needs no guessing.

package localrun

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/surgeml/surge/internal/embedded"
)

// WebTier is a running web tier.
type WebTier struct {
	// ID is its -instance-id, empty for the one web tier of a system
	// that runs one, which reads the shared response queue as the
	// course's does.
	ID      string
	URL     string
	Log     string
	port    int
	started time.Time
	cmd     *exec.Cmd
	done    chan struct{}
	err     error
}

// webSpec is how a system starts its web tiers.
type webSpec struct {
	bin  string
	args []string // besides -listen-fd and -instance-id
	env  []string
	host string
	data string // the data directory, where a tier with an id holds its lock
}

// listenSocket binds a listening socket on host:port. shared puts it in
// the port's SO_REUSEPORT group, where the kernel spreads new
// connections across the sockets by a hash of their addresses: each web
// tier of several gets one. The socket is returned as a file to pass to
// a child, with the port it got (port 0 takes a free one).
func listenSocket(ctx context.Context, host string, port int, shared bool) (*os.File, int, error) {
	var lc net.ListenConfig
	if shared {
		lc.Control = func(_, _ string, c syscall.RawConn) error {
			var err error
			if cerr := c.Control(func(fd uintptr) {
				err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
			}); cerr != nil {
				return cerr
			}
			return err
		}
	}
	ln, err := lc.Listen(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return nil, 0, fmt.Errorf("web tier address: %w", err)
	}
	defer ln.Close()
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		return nil, 0, fmt.Errorf("web tier address: %w", err)
	}
	return f, ln.Addr().(*net.TCPAddr).Port, nil
}

// start runs bin/webtier on the listening socket ln, as instance id if
// id is set, logging to logPath, and returns once it is ready. ln is
// closed here as soon as the child holds its copy: a socket left open in
// this process would stay in the port's group after the child died, and
// the connections the kernel gave it would wait for an accept that never
// comes, instead of being reset.
func (s webSpec) start(ctx context.Context, ln *os.File, port int, id, logPath string) (*WebTier, error) {
	defer ln.Close()
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("opening the web tier's log: %w", err)
	}
	args := []string{"-listen-fd", "3"}
	if id != "" {
		args = append(args, "-instance-id", id)
	}
	cmd := exec.Command(filepath.Join(s.bin, "webtier"), append(args, s.args...)...)
	cmd.Env = append(os.Environ(), s.env...)
	cmd.ExtraFiles = []*os.File{ln}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Its own process group, so a terminal's Ctrl-C reaches only the
	// parent, which stops things in order. If the parent dies, SIGHUP: the
	// fleet dies with it, so the web tier answers its open uploads with
	// their ids at once rather than wait for answers that cannot come.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGHUP}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting the web tier: %w", err)
	}
	ln.Close()
	p := &WebTier{ID: id, Log: logPath, port: port, started: time.Now(), cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); logFile.Close(); close(p.done) }()
	host := s.host
	if host == "" {
		host = "127.0.0.1"
	}
	p.URL = "http://" + net.JoinHostPort(host, strconv.Itoa(port))
	if err := p.waitReady(ctx, s.data, 30*time.Second); err != nil {
		p.Stop(5 * time.Second)
		return nil, fmt.Errorf("web tier did not come up (see %s): %w", logPath, err)
	}
	return p, nil
}

// waitReady waits until the port answers /healthz 200 and, for a tier
// with an id, it holds its lock. Several tiers share the port, and any of
// them may answer; the lock, taken before the tier opens its queues and
// serves, is what says this one is up. Connections the kernel gives its
// socket meanwhile wait in its backlog: they are not lost.
func (p *WebTier) waitReady(ctx context.Context, data string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		err := p.healthy(ctx)
		if err == nil && p.ID != "" {
			var held bool
			if held, err = embedded.Held(data, embedded.WebTierLock(p.ID)); err == nil && !held {
				err = errors.New("it has not taken its lock yet")
			}
		}
		if err == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("it exited: %v", p.err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return err
		}
	}
}

// healthy asks the port's /healthz; not ready says why (a disk with no
// room for an upload, say).
func (p *WebTier) healthy(ctx context.Context) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.URL+"/healthz", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	why, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(why)))
	}
	return nil
}

// Done is closed when the web tier exits.
func (p *WebTier) Done() <-chan struct{} { return p.done }

// PID is the web tier's process id.
func (p *WebTier) PID() int { return p.cmd.Process.Pid }

// PeakRSS is the web tier's peak resident memory so far, in bytes.
func (p *WebTier) PeakRSS() int64 { return embedded.PeakRSS(p.cmd.Process.Pid) }

// Hurry cuts a stop's drain short (SIGHUP): the uploads still waiting are
// answered 503 with their ids at once.
func (p *WebTier) Hurry() {
	p.cmd.Process.Signal(syscall.SIGHUP)
}

// Kill ends the web tier with SIGKILL, as a crash would, and waits for it.
func (p *WebTier) Kill() {
	p.cmd.Process.Kill()
	<-p.done
}

// Stop asks the web tier to shut down (it answers its open requests
// first, for up to its drain timeout) and waits, killing it after grace.
func (p *WebTier) Stop(grace time.Duration) error {
	select {
	case <-p.done:
	default:
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(grace):
			p.cmd.Process.Kill()
			<-p.done
		}
	}
	var exit *exec.ExitError
	if errors.As(p.err, &exit) {
		return fmt.Errorf("%s: %w", p, p.err)
	}
	return nil
}

// String names the web tier in messages.
func (p *WebTier) String() string {
	if p.ID == "" {
		return "web tier"
	}
	return "web tier " + p.ID
}
