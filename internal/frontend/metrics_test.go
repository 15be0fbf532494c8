package frontend_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/surgeml/surge/internal/frontend"
	"github.com/surgeml/surge/internal/metrics"
	"github.com/surgeml/surge/internal/testenv"
)

// hasSamples fails t for each sample line want that the exposition lacks.
func hasSamples(t *testing.T, body string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(body, "\n"+w+"\n") {
			t.Errorf("/metrics lacks %q", w)
		}
	}
	if t.Failed() {
		var surge []string
		for _, l := range strings.Split(body, "\n") {
			if strings.HasPrefix(l, "surge_") {
				surge = append(surge, l)
			}
		}
		t.Logf("surge samples:\n%s", strings.Join(surge, "\n"))
	}
}

// After uploads answered by a worker, from the results table and with
// 400, /metrics counts each by status, times each, counts the cached one
// and the results that waited in the response queue; the EMF line of the
// period says the same.
func TestMetricsCountUploads(t *testing.T) {
	var emfOut bytes.Buffer
	emf := metrics.NewEMF(&emfOut, "test", metrics.WebEMF()...)
	s := newSite(t, frontend.Config{EMF: emf})
	s.worker(t)
	eagle := testenv.Photo(t, "eagle.jpg")
	for i, want := range []int{200, 200, 400} {
		data := eagle
		if i == 2 {
			data = []byte("not an image")
		}
		if r := upload(t, s.url, "inputFile", "eagle.jpg", data); r.status != want {
			t.Fatalf("upload %d: %d %q, want %d", i, r.status, r.body, want)
		}
	}
	r := get(t, s.url+"/metrics")
	if r.status != 200 {
		t.Fatalf("/metrics: %d %s", r.status, r.body)
	}
	hasSamples(t, r.body,
		`surge_uploads_total{status="200"} 2`,
		`surge_uploads_total{status="400"} 1`,
		`surge_upload_duration_seconds_count 3`,
		`surge_cached_answers_total 1`,
		`surge_result_wait_seconds_count 1`,
	)

	if err := emf.Flush(); err != nil {
		t.Fatal(err)
	}
	var line map[string]any
	if err := json.Unmarshal(emfOut.Bytes(), &line); err != nil {
		t.Fatalf("EMF line: %v: %s", err, emfOut.String())
	}
	if line["Uploads"] != 3.0 || line["UploadErrors"] != 1.0 || line["CachedAnswers"] != 1.0 ||
		len(line["UploadLatency"].([]any)) != 3 || len(line["ResultWait"].([]any)) != 1 {
		t.Errorf("EMF line %s", emfOut.String())
	}
}

// Queue depths and the fleet are read when scraped, as /status reads them.
func TestMetricsReadQueuesAndFleet(t *testing.T) {
	s := newSite(t, frontend.Config{MaxWorkers: 7})
	for range 12 {
		s.requests.Send(context.Background(), []byte("{}"))
	}
	r := get(t, s.url+"/metrics")
	hasSamples(t, r.body,
		`surge_queue_messages{queue="request",state="visible"} 12`,
		`surge_queue_messages{queue="request",state="in_flight"} 0`,
		`surge_queue_messages{queue="response",state="visible"} 0`,
		`surge_queue_messages{queue="dead_letters",state="visible"} 0`,
		`surge_fleet_workers{state="desired"} 2`,
		`surge_fleet_workers{state="running"} 0`,
		`surge_uploads_waiting 0`,
	)
}
