package localrun_test

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/surgeml/surge/internal/backend"
	"github.com/surgeml/surge/internal/localrun"
	"github.com/surgeml/surge/internal/metrics"
	"github.com/surgeml/surge/internal/testenv"
)

// scrape reads the value of the sample named exactly name (with its
// labels) from GET url, and whether it is there.
func scrape(t *testing.T, url, name string) (float64, bool) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d, %v", url, resp.StatusCode, err)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: sample %q: %v", url, line, err)
			}
			return f, true
		}
	}
	return 0, false
}

// After the face workload, the web tier's /metrics counts its 100
// uploads, and the workers' own /metrics, found through /status, count
// 100 recognised between them, with an inference for each; the scaler's
// metrics count the launches that grew the fleet.
func TestMetricsAfterFaceWorkload(t *testing.T) {
	gallery := testenv.EnrollFaces(t, bin(t))
	reg := metrics.NewRegistry()
	sys := startWith(t, localrun.Config{
		Bin:        bin(t),
		Backend:    backend.Config{Kind: "local", Prefix: "e2e", DataDir: t.TempDir(), Visibility: 30 * time.Second, MaxReceives: 5},
		Host:       "127.0.0.1",
		MaxWorkers: maxWorkers,
		Tick:       time.Second,
		// The workers stay up after the run, to be scraped.
		ScaleInDelay: time.Hour,
		WorkerArgs:   []string{"-ort-lib", testenv.RuntimeLib(t), "-model", testenv.Model(t).Path, "-gallery", gallery},
		Metrics:      metrics.NewScaler(reg),
	})
	files, expected := testenv.Images(t, "datasets", "faces", "face_images_100"), testenv.Labels(t, "datasets", "faces", "face_images_100.csv")
	rep := testenv.Workload(t, sys.URL, files, expected)
	if rep.Correct != len(files) {
		t.Fatalf("%d of %d correct", rep.Correct, len(files))
	}

	web := sys.URL + "/metrics"
	if n, _ := scrape(t, web, `surge_uploads_total{status="200"}`); n != float64(len(files)) {
		t.Errorf("web tier counts %v uploads answered 200, want %d", n, len(files))
	}
	if n, _ := scrape(t, web, `surge_upload_duration_seconds_count`); n != float64(len(files)) {
		t.Errorf("web tier timed %v uploads, want %d", n, len(files))
	}

	// A worker counts a request once its answer is sent, which can be
	// just after the web tier has passed it on.
	var recognised, inferred float64
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		recognised, inferred = 0, 0
		instances := status(t, sys.URL).Fleet.Instances
		for _, in := range instances {
			if !in.Ready {
				continue // still starting: it has taken no work
			}
			if in.MetricsAddr == "" {
				t.Fatalf("worker %s shows no metrics address in /status", in.Name)
			}
			url := "http://" + in.MetricsAddr + "/metrics"
			n, _ := scrape(t, url, `surge_worker_requests_total{outcome="recognised"}`)
			recognised += n
			n, _ = scrape(t, url, `surge_worker_inference_seconds_count`)
			inferred += n
		}
		if recognised == float64(len(files)) || time.Now().After(deadline) {
			t.Logf("%d workers recognised %v, inferred %v", len(instances), recognised, inferred)
			break
		}
	}
	if recognised != float64(len(files)) || inferred != float64(len(files)) {
		t.Errorf("workers recognised %v and inferred %v, want %d each", recognised, inferred, len(files))
	}

	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	launches := 0.0
	for _, f := range families {
		if f.GetName() == "surge_scaler_launches_total" {
			launches = f.GetMetric()[0].GetCounter().GetValue()
		}
	}
	if launches < 2 {
		t.Errorf("scaler counts %v launches; the fleet grew from 0 to more than one", launches)
	}
}
