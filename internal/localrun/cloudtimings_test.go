package localrun_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/surgeml/surge/events"
	"github.com/surgeml/surge/internal/backend"
	"github.com/surgeml/surge/internal/localrun"
	"github.com/surgeml/surge/internal/testenv"
)

// The cloud bench's timings reach every process: the web tier and the
// workers each pay the per-call latency (they are separate processes,
// given it on their command lines), and a worker starts only after its
// instance's boot.
func TestCloudTimingsReachEveryTier(t *testing.T) {
	const boot = time.Second
	latency := backend.Latency{SQS: 100 * time.Millisecond, S3: 100 * time.Millisecond}
	sys := startWith(t, localrun.Config{
		Bin: bin(t),
		Backend: backend.Config{Kind: "local", Prefix: "cloud", DataDir: t.TempDir(),
			Visibility: events.RequestVisibility, MaxReceives: 5, Latency: latency},
		Host: "127.0.0.1", MaxWorkers: 1, Tick: 100 * time.Millisecond, ScaleInDelay: time.Hour,
		LaunchDelay: boot,
		WorkerArgs:  []string{"-ort-lib", testenv.RuntimeLib(t), "-model", testenv.Model(t).Path},
		WebArgs:     []string{"-reuse-answers=false"},
	})
	files := testenv.Images(t, "datasets", "imagenet-100", "images")[:2]

	ask := func(file string) time.Duration {
		t.Helper()
		start := time.Now()
		o := <-uploadAll(sys.URL, []string{file})
		if o.err != nil || o.status != http.StatusOK {
			t.Fatalf("upload %s: %d %q %v", file, o.status, o.body, o.err)
		}
		return time.Since(start)
	}
	if d := ask(files[0]); d < boot {
		t.Errorf("the first answer from an empty fleet took %v, less than the instance's %v boot", d, boot)
	}
	// With the worker up, one request's critical path is, in round trips:
	// the web tier's put and half its send (150 ms), the worker's half
	// receive, get, put and half send (300 ms), the web tier's half
	// receive (50 ms). Without the latency in either tier it would be
	// at most 300 or 200 ms of it.
	if d := ask(files[1]); d < 450*time.Millisecond {
		t.Errorf("a request with the worker up took %v, want at least the 500ms of round trips on its path", d)
	}
}
