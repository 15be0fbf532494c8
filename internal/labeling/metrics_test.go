package labeling_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/surgeml/surge/internal/labeling"
	"github.com/surgeml/surge/internal/metrics"
	"github.com/surgeml/surge/internal/testenv"
)

// A worker's /metrics, served on a real socket, counts what it did:
// after N good images and one that cannot be decoded, N recognised, one
// failed, and an inference observed for each.
func TestMetricsCountRequests(t *testing.T) {
	r := newRig(t, 30*time.Second, 5)
	const n = 3
	for i := range n {
		r.submit(t, fmt.Sprint("id-", i), fmt.Sprintf("dog%d.jpg", i), testenv.Photo(t, "dog.jpg"))
	}
	r.submit(t, "text", "notes.jpg", []byte("this is not a picture"))

	reg := metrics.NewRegistry()
	var emfOut bytes.Buffer
	emf := metrics.NewEMF(&emfOut, "test", metrics.WorkerEMF()...)
	w := metrics.NewWorker(reg, emf)
	r.start(t, labeling.Config{Wait: time.Second, Observer: w, Held: w.Held})
	for range n + 1 {
		r.result(t, 10*time.Second)
	}
	r.eventuallyEmpty(t)

	ln, err := metrics.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go metrics.Serve(ctx, ln, reg, slog.New(slog.DiscardHandler))
	resp, err := http.Get("http://" + ln.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	// The period's EMF line says the same.
	if err := emf.Flush(); err != nil {
		t.Fatal(err)
	}
	var line map[string]any
	if err := json.Unmarshal(emfOut.Bytes(), &line); err != nil {
		t.Fatalf("EMF line: %v: %s", err, emfOut.String())
	}
	if line["Recognised"] != float64(n) || line["RecognitionFailed"] != 1.0 || len(line["InferenceTime"].([]any)) != n+1 {
		t.Errorf("EMF line %s", emfOut.String())
	}

	for _, want := range []string{
		fmt.Sprintf(`surge_worker_requests_total{outcome="recognised"} %d`, n),
		`surge_worker_requests_total{outcome="failed"} 1`,
		`surge_worker_requests_total{outcome="retried"} 0`,
		fmt.Sprintf(`surge_worker_inference_seconds_count %d`, n+1),
	} {
		if !strings.Contains(string(body), want+"\n") {
			t.Errorf("/metrics lacks %q:\n%s", want, grepSurge(string(body)))
		}
	}
}

func grepSurge(body string) string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, "surge_") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
