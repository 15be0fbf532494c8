package localrun_test

import (
	"bytes"
	"context"
	"image"
	pngenc "image/png"
	"io"
	"mime/multipart"
	"net/http"
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

// A model process that answers one kind of image with a line over 64 KiB
// costs that upload its answer, not the worker: the upload is answered
// with an error and its id once its deliveries are spent, and the next
// upload on the same worker is answered (issue 23, defect 1: the worker
// waited for ever, and every request behind it got nothing).
func TestExternalModelLongLineThroughTheSystem(t *testing.T) {
	t.Setenv("SIZES_LONG", "answer")
	sys := startWith(t, localrun.Config{
		Bin:          bin(t),
		Backend:      backend.Config{Kind: "local", Prefix: "ext", DataDir: t.TempDir(), Visibility: 30 * time.Second, MaxReceives: 3},
		Host:         "127.0.0.1",
		MaxWorkers:   1,
		Tick:         time.Second,
		ScaleInDelay: time.Second,
		WorkerArgs:   []string{"-model-command", strings.Join(testenv.SizesModel(t), " "), "-model-timeout", "3s"},
	})
	var png bytes.Buffer
	if err := pngenc.Encode(&png, image.NewGray(image.Rect(0, 0, 7, 3))); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r := postFile(t, sys.URL, "bad.png", png.Bytes())
	t.Logf("the PNG: %d %q after %v", r.status, r.body, time.Since(start).Round(time.Millisecond))
	if r.status < 500 || r.id == "" || !strings.Contains(r.body, r.id) {
		t.Errorf("the PNG: %d %q, want an error naming its id", r.status, r.body)
	}
	jpeg := testenv.Path(t, "images", "darknet", "dog.jpg")
	rep := testenv.Workload(t, sys.URL, []string{jpeg}, map[string]string{"dog": "jpeg-768x576"})
	if rep.Correct != 1 {
		t.Errorf("the JPEG after it was not answered jpeg-768x576")
	}
}

type postReply struct {
	status   int
	body, id string
}

func postFile(t *testing.T, url, name string, data []byte) postReply {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, _ := mw.CreateFormFile("inputFile", name)
	fw.Write(data)
	mw.Close()
	res, err := http.Post(url, mw.FormDataContentType(), &body)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return postReply{res.StatusCode, string(b), res.Header.Get("X-Request-Id")}
}
