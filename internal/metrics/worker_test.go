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
