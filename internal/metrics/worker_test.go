package metrics

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"
)

// A worker's counts reach GET /metrics over a real socket.
func TestWorkerServed(t *testing.T) {
	reg := NewRegistry()
	w := NewWorker(reg, nil)
	w.Inferred(20 * time.Millisecond)
	w.Recognised()
	w.Retried()
	w.Held(3)

	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, reg, slog.New(slog.DiscardHandler)) }()
	body := get(t, "http://"+ln.Addr().String()+"/metrics")
	for _, want := range []string{
		`surge_worker_inference_seconds_count 1`,
		`surge_worker_requests_total{outcome="recognised"} 1`,
		`surge_worker_requests_total{outcome="retried"} 1`,
		`surge_worker_requests_total{outcome="failed"} 0`,
		`surge_worker_held_messages 3`,
		`surge_worker_idle 0`,
		`go_goroutines `,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", url, resp.Status, b)
	}
	return string(b)
}

// The scaler's gauges hold the last decision; its counters add up.
func TestScalerKeepsTheLastDecision(t *testing.T) {
	reg := NewRegistry()
	s := NewScaler(reg)
	s.Sizes(30, 6, 2, 0)
	s.Acted(4, 0)
	s.Sizes(0, 0, 6, 0)
	s.Acted(0, 6)
	want := map[string]float64{
		"surge_scaler_backlog": 0, "surge_scaler_desired_workers": 0, "surge_scaler_running_workers": 6,
		"surge_scaler_draining_workers": 0, "surge_scaler_launches_total": 4, "surge_scaler_drains_total": 6,
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		w, ok := want[f.GetName()]
		if !ok {
			continue
		}
		delete(want, f.GetName())
		m := f.GetMetric()[0]
		if got := m.GetGauge().GetValue() + m.GetCounter().GetValue(); got != w {
			t.Errorf("%s = %v, want %v", f.GetName(), got, w)
		}
	}
	if len(want) != 0 {
		t.Errorf("missing %v", want)
	}
}
