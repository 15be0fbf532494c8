package labeling_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"image"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/surgeml/surge/events"
	"github.com/surgeml/surge/internal/backend"
	"github.com/surgeml/surge/internal/embedded"
	"github.com/surgeml/surge/internal/testenv"
	"github.com/surgeml/surge/internal/vision"
)

// workerMemoryBound is docs/running.md's bound on a worker's resident
// memory while it decodes one upload at the size and pixel limits.
const workerMemoryBound = 200 << 20

type memoryUpload struct {
	name, label string
	code        events.ErrorCode // the error it must be answered with, if any
	data        []byte
}

// The real worker binary, given uploads under the pixel limit that are
// small as files but huge as pixels, answers each and stays within its
// memory bound: each image in a worker of its own, then all of them held
// at once by one worker with one inference (held uploads cost their bytes,
// not their pixels, since only an inference decodes). Issue 10, defect 4:
// a 287 KB progressive 7000×7000 JPEG took a worker to 811 MB; such a JPEG
// is now refused from its header, as image/jpeg would keep 706 MB for it,
// and the largest JPEGs taken are decoded.
func TestWorkerMemoryBound(t *testing.T) {
	bin := testenv.BuildBinaries(t, "./worker")
	eagle, err := vision.Decode(testenv.Darknet(t, "eagle.jpg"), vision.DefaultMaxPixels)
	if err != nil {
		t.Fatal(err)
	}
	uploads := []memoryUpload{
		{"eagle7000.jpg", "", events.ErrImageTooLarge, progressive(t, 7000, 7000, testenv.BlockColours(eagle, 875, 875))},
		{"wide.jpg", "", events.ErrImageTooLarge, progressive(t, 49000, 1016, testenv.BlockColours(eagle, 6125, 127))},
		{"deep16.png", "", "", pngOf(t, 7000, 7000, 16, 6)},
		{"wide16.png", "", "", pngOf(t, 49000, 1020, 16, 6)},
		{"eagle12mp.jpg", "bald eagle", "", photo420(t, 4032, 3024, true, eagle)},
		{"eagle48mp.jpg", "bald eagle", "", photo420(t, 8064, 6048, false, eagle)},
	}
	for _, u := range uploads {
		t.Run(u.name, func(t *testing.T) { workerMemory(t, bin, []memoryUpload{u}) })
	}
	t.Run("all at once", func(t *testing.T) { workerMemory(t, bin, uploads) })
}

// workerMemory sends the uploads to a new worker with one inference and
// checks each answer and the worker's peak RSS after it.
func workerMemory(t *testing.T, bin string, uploads []memoryUpload) {
	ctx := context.Background()
	dir := t.TempDir()
	b, err := backend.Open(ctx, backend.Config{Kind: "local", Prefix: "surge", DataDir: dir, Visibility: 30 * time.Second, MaxReceives: 5})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })

	logPath := filepath.Join(dir, "worker.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd := exec.Command(filepath.Join(bin, "worker"), "-backend", "local", "-data", dir, "-prefix", "surge",
		"-name", "app-tier-instance-1", "-wait", "1s", "-concurrency", "8", "-inferences", "1",
		"-ort-lib", testenv.RuntimeLib(t), "-models", testenv.Path(t, "models"), "-cache", testenv.Cache(t))
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if t.Failed() {
			out, _ := os.ReadFile(logPath)
			t.Logf("worker log:\n%s", out)
		}
	})

	held := 0
	for i, u := range uploads {
		held += len(u.data)
		sum := sha256.Sum256(u.data)
		req := events.NewRequest(fmt.Sprintf("id-%d", i), u.name, hex.EncodeToString(sum[:]), time.Now())
		if err := b.Inputs.Put(ctx, req.Key, u.data); err != nil {
			t.Fatal(err)
		}
		body, err := events.EncodeRequest(req)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Requests.Send(ctx, body); err != nil {
			t.Fatal(err)
		}
	}
	bound := workerMemoryBound + int64(held)
	for range uploads {
		msgs, err := b.Responses.Receive(ctx, 1, 60*time.Second)
		if err != nil || len(msgs) != 1 {
			t.Fatalf("no answer within 60 s (%v)", err)
		}
		res, err := events.DecodeResult(msgs[0].Body)
		if err != nil {
			t.Fatal(err)
		}
		b.Responses.Delete(ctx, msgs[0].Receipt)
		var i int
		if _, err := fmt.Sscanf(res.ID, "id-%d", &i); err != nil || i < 0 || i >= len(uploads) {
			t.Fatalf("answer for an unknown request %+v", res)
		}
		u := uploads[i]
		peak := embedded.PeakRSS(cmd.Process.Pid)
		t.Logf("%s (%d KB): %q, error %v; worker peak RSS %.0f MB", u.name, len(u.data)>>10, res.Label, res.Error, float64(peak)/(1<<20))
		switch {
		case u.code != "" && (res.Error == nil || res.Error.Code != u.code):
			t.Errorf("%s: answered %+v, want error %q", u.name, res, u.code)
		case u.code == "" && (res.Error != nil || (u.label != "" && res.Label != u.label)):
			t.Errorf("%s: answered %+v, want label %q", u.name, res, u.label)
		}
		if peak <= 0 || peak > bound {
			t.Errorf("after %s the worker's peak RSS is %.0f MB, over the bound of %d MB", u.name, float64(peak)/(1<<20), bound>>20)
		}
	}
}

// photo420 is a w×h JPEG, 4:2:0 as cameras write them, of img drawn in
// flat 8×8 blocks.
func photo420(t *testing.T, w, h int, progressive bool, img image.Image) []byte {
	t.Helper()
	colours := testenv.BlockColours(img, w/8, h/8)
	var buf bytes.Buffer
	l := testenv.JPEGLayout{Width: w, Height: h, Sampling: [][2]int{{2, 2}, {1, 1}, {1, 1}}, Progressive: progressive, AdobeTransform: -1}
	err := testenv.FlatJPEG(&buf, l, func(c, bx, by int) uint8 {
		if c > 0 { // a chroma block covers 2×2 luma blocks
			bx, by = 2*bx, 2*by
		}
		return colours(c, bx, by)
	})
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func progressive(t *testing.T, w, h int, dc func(c, bx, by int) uint8) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := testenv.ProgressiveJPEG(&buf, w, h, dc); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func pngOf(t testing.TB, w, h, depth, colourType int) []byte {
	t.Helper()
	data, err := testenv.GradientPNG(w, h, depth, colourType)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
