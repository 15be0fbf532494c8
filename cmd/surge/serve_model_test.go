package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/surgeml/surge/internal/recognize"
	"github.com/surgeml/surge/internal/testenv"
	"github.com/surgeml/surge/internal/vision"
)

// serve-model says it is ready with the model's name, answers a photo
// with what the model itself says of it, refuses a file that is not an
// image (and one that is missing) with an error line, and ends with its
// input.
func TestServeModelSpeaksTheProtocol(t *testing.T) {
	c, err := recognize.NewClassifier(testenv.Runtime(t), testenv.Model(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dir := t.TempDir()
	dog := filepath.Join(dir, "dog.jpg")
	notes := filepath.Join(dir, "notes.txt")
	data := testenv.Darknet(t, "dog.jpg")
	if err := os.WriteFile(dog, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(notes, []byte("not an image"), 0o600); err != nil {
		t.Fatal(err)
	}
	img, err := vision.Decode(data, vision.DefaultMaxPixels)
	if err != nil {
		t.Fatal(err)
	}
	label, score, err := c.Recognize(img)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	in := strings.NewReader(strings.Join([]string{dog, notes, filepath.Join(dir, "gone.jpg"), ""}, "\n"))
	if err := serveModel(context.Background(), c, in, &out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 4 {
		t.Fatalf("%d lines, want 4:\n%s", len(lines), out.String())
	}
	want := []string{"ready " + c.Name(), fmt.Sprintf("%s\t%g", label, score), "error\tnot an image", "error\topen"}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("line %d: %q, want it to start %q", i+1, lines[i], w)
		}
	}
}
