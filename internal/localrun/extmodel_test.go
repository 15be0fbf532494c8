package localrun_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/surgeml/surge/internal/backend"
	"github.com/surgeml/surge/internal/localrun"
	"github.com/surgeml/surge/internal/testenv"
)

// Workers that run no model themselves but `surge serve-model` as their
// external model process (-model-command) answer the 100-face workload
// 100/100 against the enrolled gallery, and say the external model
// answered.
func TestFacesByExternalModelProcess(t *testing.T) {
	gallery := testenv.EnrollFaces(t, bin(t))
	command := strings.Join([]string{filepath.Join(bin(t), "surge"), "serve-model",
		"-ort-lib", testenv.RuntimeLib(t), "-model", testenv.Model(t).Path, "-gallery", gallery}, " ")
	if len(strings.Fields(command)) != 8 {
		t.Skipf("a path has a space, which -model-command cannot quote: %q", command)
	}
	sys := startWith(t, localrun.Config{
		Bin:          bin(t),
		Backend:      backend.Config{Kind: "local", Prefix: "ext", DataDir: t.TempDir(), Visibility: 30 * time.Second, MaxReceives: 5},
		Host:         "127.0.0.1",
		MaxWorkers:   4,
		Tick:         time.Second,
		ScaleInDelay: time.Second,
		WorkerArgs:   []string{"-model-command", command},
	})
	expected := testenv.Labels(t, "datasets", "faces", "face_images_100.csv")
	sent := testenv.Images(t, "datasets", "faces", "face_images_100")
	rep := testenv.Workload(t, sys.URL, sent, expected)
	if rep.Correct != 100 || len(sent) != 100 {
		t.Fatalf("%d correct of %d", rep.Correct, len(sent))
	}
	it, err := sys.Backends.Table.Get(context.Background(), filepath.Base(sent[0]))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(it.Model, "ext:") {
		t.Fatalf("answered by model %q, want the external model (ext:...)", it.Model)
	}
	t.Logf("model %s", it.Model)
}
