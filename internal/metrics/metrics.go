// Package metrics is what every Surge process shares about its metrics:
// a Prometheus registry per process, served on GET /metrics (this file),
// and CloudWatch embedded-metric-format lines, flushed every period to
// stdout or the CloudWatch agent (emf.go). The collectors themselves
// belong to the tiers that count; the worker's, being the same in every
// worker, are here (worker.go).
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Namespace prefixes every Prometheus metric of Surge's.
const Namespace = "surge"

// NewRegistry is a process's registry, holding the Go runtime's and the
// process's own collectors beside whatever the caller registers.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Handler serves reg in the Prometheus exposition format.
func Handler(reg prometheus.Gatherer) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}

// Listen opens addr for Serve: "127.0.0.1:0" picks a free port, which the
// listener's Addr names.
func Listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening for metrics on %s: %w", addr, err)
	}
	return ln, nil
}

// Serve answers GET /metrics from reg on ln until ctx ends.
func Serve(ctx context.Context, ln net.Listener, reg prometheus.Gatherer, log *slog.Logger) error {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", Handler(reg))
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	stop := context.AfterFunc(ctx, func() { srv.Close() })
	defer stop()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving metrics: %w", err)
	}
	return nil
}

// DefaultSecondsBuckets cover an upload's or an inference's time: a
// few milliseconds for a cached answer or a small model, up to the
// minutes a backlog can make an upload wait.
var DefaultSecondsBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300}
