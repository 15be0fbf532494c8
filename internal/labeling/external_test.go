package labeling_test

import (
	"bytes"
	"context"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/surgeml/surge/events"
	"github.com/surgeml/surge/internal/labeling"
	"github.com/surgeml/surge/internal/recognize"
)

// A worker whose model is a process of its own hands it the upload's
// bytes: the reference model (testdata/models/sizes.py) answers a JPEG by
// reading its header; an image the model refuses (a GIF) is answered as
// undecodable, and one over the pixel limit or not an image is refused by
// the worker before the model sees it.
func TestExternalModelGetsTheUpload(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is not installed")
	}
	script, err := filepath.Abs(filepath.Join("..", "..", "testdata", "models", "sizes.py"))
	if err != nil {
		t.Fatal(err)
	}
	ext, err := recognize.StartExternal(context.Background(), recognize.ExternalConfig{Command: []string{python, script}, Processes: 1}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer ext.Close()
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
