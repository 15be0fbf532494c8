package localrun_test

import (
	"bytes"
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/surgeml/surge/internal/backend"
	"github.com/surgeml/surge/internal/localrun"
	"github.com/surgeml/surge/internal/testenv"
)

// The short version of `make chaos`: 400 face requests at 100 concurrent
// through the real binaries while two busy workers are killed with
// SIGKILL, the scaler is restarted and the whole system is stopped (as
// Ctrl-C does, with a short drain) and started again on the same data. Every request is
// answered correctly, directly or by id, or failed with a reason and its
// id; none is lost or wrong; the queues end empty.
func TestShortChaos(t *testing.T) {
	gallery := testenv.EnrollFaces(t, bin(t))
	var events bytes.Buffer
	rep, err := localrun.RunChaos(context.Background(), localrun.ChaosConfig{
		System: localrun.Config{
			Bin:        bin(t),
			Backend:    backend.Config{Kind: "local", Prefix: "chaos", DataDir: t.TempDir(), Visibility: 3 * time.Second, MaxReceives: 5},
			MaxWorkers: 19, Tick: time.Second, ScaleInDelay: time.Second,
			// Short, so that some clients are sent away with their ids and
			// collect their answers from the restarted system.
			DrainTimeout: 500 * time.Millisecond,
			WorkerArgs:   []string{"-ort-lib", testenv.RuntimeLib(t), "-model", testenv.Model(t).Path, "-gallery", gallery},
		},
		Images:   testenv.Images(t, "datasets", "faces", "face_images_1000"),
		Expected: testenv.Labels(t, "datasets", "faces", "face_images_1000.csv"),
		Requests: 400, Kills: 2, Scaler: 1, Restart: true,
		Progress: func(e string) { events.WriteString(e + "\n") },
	}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	rep.Print(&out)
	t.Logf("%s\n%s", events.String(), out.String())
	if !rep.OK() || rep.Restarts != 1 || rep.Kills == 0 || rep.Correct+rep.Failed != 400 {
		t.Fatalf("chaos run not clean")
	}
}
