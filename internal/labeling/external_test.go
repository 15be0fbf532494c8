package labeling_test

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/surgeml/surge/events"
	"github.com/surgeml/surge/internal/labeling"
	"github.com/surgeml/surge/internal/recognize"
	"github.com/surgeml/surge/internal/testenv"
)

// startSizes runs the reference model process, testdata/models/sizes.py,
// with env (NAME=value) added to its environment.
func startSizes(t *testing.T, processes int, env ...string) *recognize.External {
	t.Helper()
	ext, err := recognize.StartExternal(context.Background(), recognize.ExternalConfig{Command: append(append([]string{"env"}, env...), testenv.SizesModel(t)...), Processes: processes}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ext.Close() })
	return ext
}

// A worker whose model is a process of its own hands it the upload's
// bytes: the reference model (testdata/models/sizes.py) answers a JPEG by
// reading its header; an image the model refuses (a GIF) is answered as
// undecodable, and one over the pixel limit or not an image is refused by
// the worker before the model sees it.
func TestExternalModelGetsTheUpload(t *testing.T) {
	ext := startSizes(t, 1)
	r := newRig(t, 30*time.Second, 5)
	r.recognizer = ext
	r.start(t, labeling.Config{Wait: time.Second, MaxPixels: 100 * 100})

	var photo, big, anim bytes.Buffer
	if err := jpeg.Encode(&photo, image.NewRGBA(image.Rect(0, 0, 80, 60)), nil); err != nil {
		t.Fatal(err)
	}
	if err := jpeg.Encode(&big, image.NewRGBA(image.Rect(0, 0, 101, 100)), nil); err != nil {
		t.Fatal(err)
	}
	if err := gif.Encode(&anim, image.NewPaletted(image.Rect(0, 0, 8, 8), []color.Color{color.Black}), nil); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		data  []byte
		label string
		code  events.ErrorCode
		says  string
	}{
		{name: "photo.jpg", data: photo.Bytes(), label: "jpeg-80x60"},
		{name: "anim.gif", data: anim.Bytes(), code: events.ErrUndecodable, says: "refused the image: not a JPEG or PNG"},
		{name: "big.jpg", data: big.Bytes(), code: events.ErrImageTooLarge, says: "101×100"},
		{name: "notes.jpg", data: []byte("not an image"), code: events.ErrUndecodable, says: "not an image"},
	} {
		r.submit(t, c.name, c.name, c.data)
		res := r.result(t, 10*time.Second)
		if res.ID != c.name || res.Label != c.label || res.Model != "ext:sizes" {
			t.Errorf("%s: result %+v, want label %q from ext:sizes", c.name, res, c.label)
		}
		switch {
		case c.code == "" && res.Error != nil:
			t.Errorf("%s: error %+v", c.name, res.Error)
		case c.code != "" && (res.Error == nil || res.Error.Code != c.code || !strings.Contains(res.Error.Message, c.says)):
			t.Errorf("%s: error %+v, want %s saying %q", c.name, res.Error, c.code, c.says)
		}
	}
	r.eventuallyEmpty(t)
}

// A model process SIGKILLed while it holds a request costs no request, not
// even a redelivery: the worker answers all of them, correctly, on their
// first delivery, and one process was restarted.
func TestExternalModelKilledLosesNoRequest(t *testing.T) {
	hold := filepath.Join(t.TempDir(), "held")
	// The first process asked hangs, with its pid in hold.
	ext := startSizes(t, 2, "SIZES_HOLD="+hold)
	// One delivery each: the killed request must be answered by the new
	// process, not by a redelivery, which would be a "gave up" failure.
	r := newRig(t, 30*time.Second, 1)
	r.recognizer = ext
	r.start(t, labeling.Config{Wait: time.Second, Inferences: 2})
	want := map[string]string{}
	for i := range 10 {
		var buf bytes.Buffer
		if err := jpeg.Encode(&buf, image.NewRGBA(image.Rect(0, 0, 10+i, 20)), nil); err != nil {
			t.Fatal(err)
		}
		id := fmt.Sprintf("photo-%d", i)
		want[id] = fmt.Sprintf("jpeg-%dx20", 10+i)
		r.submit(t, id, id+".jpg", buf.Bytes())
	}
	var pid int
	for {
		b, rerr := os.ReadFile(hold)
		var perr error
		if pid, perr = strconv.Atoi(string(b)); rerr == nil && perr == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for range len(want) {
		res := r.result(t, 10*time.Second)
		if res.Error != nil || res.Label != want[res.ID] {
			t.Errorf("%s: %+v, want %q", res.ID, res, want[res.ID])
		}
		delete(want, res.ID)
	}
	if len(want) != 0 {
		t.Errorf("unanswered: %v", want)
	}
	if ext.Restarts() != 1 {
		t.Errorf("%d restarts, want 1", ext.Restarts())
	}
	r.eventuallyEmpty(t)
}
