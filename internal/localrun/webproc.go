// This file runs the web tier binary as a child process, on a
// socket the parent binds first: a port in use is reported at once, and
// port 0 needs no guessing.

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

	"github.com/surgeml/surge/internal/embedded"
)

// WebTier is a running web tier.
type WebTier struct {
	URL  string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// StartWebTier runs bin/webtier with args and extra env, listening on host:port,
// logging to logPath, and returns once it answers /healthz.
func StartWebTier(ctx context.Context, bin string, args, env []string, host string, port int, logPath string) (*WebTier, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return nil, fmt.Errorf("web tier address: %w", err)
	}
	lnFile, err := ln.(*net.TCPListener).File()
	ln.Close()
	if err != nil {
		return nil, err
	}
	defer lnFile.Close()
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(filepath.Join(bin, "webtier"), append([]string{"-listen-fd", "3"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.ExtraFiles = []*os.File{lnFile}
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
	p := &WebTier{cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); logFile.Close(); close(p.done) }()
	if host == "" {
		host = "127.0.0.1"
	}
	p.URL = "http://" + net.JoinHostPort(host, strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
	if err := p.waitHealthy(ctx, 30*time.Second); err != nil {
		p.Stop(5 * time.Second)
		return nil, fmt.Errorf("web tier did not come up (see %s): %w", logPath, err)
	}
	return p, nil
}

func (p *WebTier) waitHealthy(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.URL+"/healthz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			// Not ready says why (a disk with no room for an upload, say).
			why, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(why)))
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

// Done is closed when the web tier exits.
func (p *WebTier) Done() <-chan struct{} { return p.done }

// PeakRSS is the web tier's peak resident memory so far, in bytes.
func (p *WebTier) PeakRSS() int64 { return embedded.PeakRSS(p.cmd.Process.Pid) }

// Hurry cuts a stop's drain short (SIGHUP): the uploads still waiting are
// answered 503 with their ids at once.
func (p *WebTier) Hurry() {
	p.cmd.Process.Signal(syscall.SIGHUP)
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
		return fmt.Errorf("web tier: %w", p.err)
	}
	return nil
}
