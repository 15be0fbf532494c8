// This file runs moto_server, the AWS emulator, on loopback for
// tests and for `surge emulate`.

package moto

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/surgeml/surge/internal/aws"
)

// Server is a running moto_server.
type Server struct {
	URL  string
	cmd  *exec.Cmd
	done chan struct{}
}

// Region is the region everything emulated lives in.
const Region = "us-east-1"

// StartServer launches moto_server on a free loopback port and waits until it
// answers. Its output goes to logPath (or is discarded when empty).
func StartServer(ctx context.Context, logPath string) (*Server, error) {
	python, err := pythonWithMoto()
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(python, "-m", "moto.server", "-H", "127.0.0.1", "-p", strconv.Itoa(port))
	if logPath != "" {
		f, err := os.Create(logPath)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		cmd.Stdout, cmd.Stderr = f, f
	}
	// Its own process group, so Stop takes any helpers it spawns too; and
	// it goes if we die.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting moto_server: %w", err)
	}
	s := &Server{URL: "http://127.0.0.1:" + strconv.Itoa(port), cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(s.done) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(s.URL + "/moto-api/")
		if err == nil {
			resp.Body.Close()
			return s, nil
		}
		select {
		case <-s.done:
			return nil, fmt.Errorf("moto_server exited at start (see %s)", logPath)
		case <-ctx.Done():
			s.Stop()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Stop()
			return nil, fmt.Errorf("moto_server did not answer within 30s: %v", err)
		}
	}
}

// pythonWithMoto finds the Python that has moto installed, past any pyenv
// shim, so that the process we start is the server itself.
func pythonWithMoto() (string, error) {
	out, err := exec.Command("python3", "-c", "import moto, sys; print(sys.executable)").Output()
	if err != nil {
		return "", errors.New("moto is not installed: python3 cannot import moto (pip install 'moto[server]')")
	}
	return strings.TrimSpace(string(out)), nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Env is the environment that points the AWS SDK (and the AWS CLI) at this
// server, with placeholder credentials moto accepts.
func (s *Server) Env() []string {
	return []string{
		"AWS_ENDPOINT_URL=" + s.URL,
		"AWS_REGION=" + Region,
		"AWS_ACCESS_KEY_ID=moto",
		"AWS_SECRET_ACCESS_KEY=moto",
		"AWS_EC2_METADATA_DISABLED=true",
	}
}

// Options configure an AWS SDK client for this server without touching
// the process's environment.
func (s *Server) Options() []func(*config.LoadOptions) error {
	return aws.Endpoint(s.URL, Region, "moto")
}

// Reset forgets every resource.
func (s *Server) Reset() error {
	resp, err := http.Post(s.URL+"/moto-api/reset", "application/json", nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("resetting moto: %s", resp.Status)
	}
	return nil
}

// Stop kills the server.
func (s *Server) Stop() {
	syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	<-s.done
}
