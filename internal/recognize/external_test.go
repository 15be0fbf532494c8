package recognize

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"log/slog"
)

// sizesModel is the reference model process, testdata/models/sizes.py.
func sizesModel(t *testing.T) []string {
	t.Helper()
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is not installed")
	}
	script, err := filepath.Abs(filepath.Join("..", "..", "testdata", "models", "sizes.py"))
	if err != nil {
		t.Fatal(err)
	}
	return []string{python, script}
}

func startSizes(t *testing.T, cfg ExternalConfig) *External {
	t.Helper()
	cfg.Command = sizesModel(t)
	e, err := StartExternal(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Error(err)
		}
		if _, err := os.Stat(e.dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("image directory %s left behind: %v", e.dir, err)
		}
	})
	return e
}

// photo is a 64×48 JPEG.
func photo(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, image.NewRGBA(image.Rect(0, 0, 64, 48)), nil); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// The model's answers come back as label and score, its "error" lines as
// a RefusedError, and its name is prefixed; no image file is left behind.
func TestExternalAnswers(t *testing.T) {
	e := startSizes(t, ExternalConfig{Processes: 2})
	if e.Name() != "ext:sizes" {
		t.Errorf("name %q, want ext:sizes", e.Name())
	}
	ctx := context.Background()
	label, score, err := e.RecognizeBytes(ctx, photo(t))
	if err != nil || label != "jpeg-64x48" || score != 1 {
		t.Errorf("face JPEG: %q %v %v, want jpeg-64x48 1", label, score, err)
	}
	img := image.NewGray(image.Rect(0, 0, 7, 3))
	img.Set(1, 1, color.White)
	if label, _, err := e.Recognize(img); err != nil || label != "png-7x3" {
		t.Errorf("decoded image: %q %v, want png-7x3", label, err)
	}
	_, _, err = e.RecognizeBytes(ctx, []byte("GIF89a not really"))
	var refused interface{ Refused() bool }
	if !errors.As(err, &refused) || !strings.Contains(err.Error(), "not a JPEG or PNG") {
		t.Errorf("non-image: %v, want a refusal saying not a JPEG or PNG", err)
	}
	if left, _ := os.ReadDir(e.dir); len(left) != 0 {
		t.Errorf("%d image files left in %s", len(left), e.dir)
	}
	if e.Restarts() != 0 {
		t.Errorf("%d restarts, want 0: a refusal is an answer", e.Restarts())
	}
}

// A process that does not say it is ready in time fails the start,
// naming the wait.
func TestExternalStartTimeout(t *testing.T) {
	t.Setenv("SIZES_START_DELAY", "30")
	_, err := StartExternal(context.Background(), ExternalConfig{Command: sizesModel(t), Processes: 1, StartTimeout: 200 * time.Millisecond}, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "ready line") || !strings.Contains(err.Error(), "200ms") {
		t.Fatalf("got %v, want a start timeout", err)
	}
}

// A command that is not a model process fails the start with its first
// line; one that cannot run, with why.
func TestExternalNotAModel(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	_, err := StartExternal(context.Background(), ExternalConfig{Command: []string{"echo", "hello"}, Processes: 1}, log)
	if err == nil || !strings.Contains(err.Error(), `"hello"`) {
		t.Errorf("echo: %v, want its line quoted", err)
	}
	_, err = StartExternal(context.Background(), ExternalConfig{Command: []string{"true"}, Processes: 1}, log)
	if err == nil || !strings.Contains(err.Error(), "ended") {
		t.Errorf("true: %v, want the process ended", err)
	}
	_, err = StartExternal(context.Background(), ExternalConfig{Command: []string{filepath.Join(t.TempDir(), "no-such-model")}, Processes: 1}, log)
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing command: %v, want not found", err)
	}
}

// An answer outside the protocol is an error that says what came and what
// was wanted, not a label; the process is replaced, and the request asked
// once more of the new one.
func TestExternalGarbageAnswer(t *testing.T) {
	t.Setenv("SIZES_GARBAGE", "1")
	e := startSizes(t, ExternalConfig{Processes: 1})
	_, _, err := e.RecognizeBytes(context.Background(), photo(t))
	var refused *RefusedError
	if err == nil || errors.As(err, &refused) || !strings.Contains(err.Error(), `"this is not an answer"`) || !strings.Contains(err.Error(), `want "<label>\t<score>"`) {
		t.Fatalf("got %v, want a protocol error quoting the line", err)
	}
	if e.Restarts() != 1 {
		t.Errorf("%d restarts, want 1, for the retry", e.Restarts())
	}
}

// A process that answers a request twice is out of step: the extra line
// is caught before the next request, and the process replaced.
func TestExternalAnswerTooMany(t *testing.T) {
	t.Setenv("SIZES_TWICE", "1")
	e := startSizes(t, ExternalConfig{Processes: 1})
	if label, _, err := e.RecognizeBytes(context.Background(), photo(t)); err != nil || label != "jpeg-64x48" {
		t.Fatalf("first: %q %v", label, err)
	}
	s := <-e.slots
	for len(s.proc.lines) == 0 { // the second answer, waiting
		time.Sleep(10 * time.Millisecond)
	}
	e.slots <- s
	if label, _, err := e.RecognizeBytes(context.Background(), photo(t)); err != nil || label != "jpeg-64x48" {
		t.Fatalf("second: %q %v", label, err)
	}
	if e.Restarts() != 1 {
		t.Errorf("%d restarts, want 1", e.Restarts())
	}
}

// SIGKILL of the process answering a request loses nothing: the request
// is answered by its replacement, started once.
func TestExternalKilledMidRequest(t *testing.T) {
	hold := filepath.Join(t.TempDir(), "held")
	t.Setenv("SIZES_HOLD", hold)
	e := startSizes(t, ExternalConfig{Processes: 1})
	type answer struct {
		label string
		err   error
	}
	done := make(chan answer, 1)
	go func() {
		label, _, err := e.RecognizeBytes(context.Background(), photo(t))
		done <- answer{label, err}
	}()
	pid := heldBy(t, hold)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	a := <-done
	if a.err != nil || a.label != "jpeg-64x48" {
		t.Fatalf("got %q %v, want jpeg-64x48", a.label, a.err)
	}
	if e.Restarts() != 1 {
		t.Errorf("%d restarts, want 1", e.Restarts())
	}
}

// A process that takes longer than RequestTimeout is killed and the
// request answered by its replacement.
func TestExternalRequestTimeout(t *testing.T) {
	hold := filepath.Join(t.TempDir(), "held")
	t.Setenv("SIZES_HOLD", hold)
	e := startSizes(t, ExternalConfig{Processes: 1, RequestTimeout: 300 * time.Millisecond})
	label, _, err := e.RecognizeBytes(context.Background(), photo(t))
	if err != nil || label != "jpeg-64x48" {
		t.Fatalf("got %q %v, want jpeg-64x48", label, err)
	}
	if e.Restarts() != 1 {
		t.Errorf("%d restarts, want 1", e.Restarts())
	}
	pid := heldBy(t, hold)
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("the process that timed out (pid %d) is still there: %v", pid, err)
	}
}

// heldBy waits for the sizes process that SIZES_HOLD made hang to write
// its pid.
func heldBy(t *testing.T, hold string) int {
	t.Helper()
	for {
		b, err := os.ReadFile(hold)
		if pid, perr := strconv.Atoi(string(b)); err == nil && perr == nil {
			return pid
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestParseAnswer(t *testing.T) {
	for _, c := range []struct {
		line    string
		label   string
		score   float64
		refused string
		bad     bool
	}{
		{line: "Paul\t0.93", label: "Paul", score: 0.93},
		{line: "Alaskan Malamute\t1", label: "Alaskan Malamute", score: 1},
		{line: "jpeg-64x48\t-2.5e-1", label: "jpeg-64x48", score: -0.25},
		{line: "error\tnot a JPEG", refused: "not a JPEG"},
		{line: "error\t", refused: ""},
		{line: "Paul", bad: true},
		{line: "Paul 0.93", bad: true},
		{line: "\t0.5", bad: true},
		{line: "Paul\tlots", bad: true},
		{line: "Paul\tNaN", bad: true},
		{line: "Paul\t+Inf", bad: true},
		{line: "Paul\t0.5\textra", bad: true},
		{line: "", bad: true},
	} {
		label, score, err := parseAnswer(c.line)
		var refused *RefusedError
		switch {
		case c.bad:
			if err == nil || errors.As(err, &refused) {
				t.Errorf("%q: got %q %v %v, want a protocol error", c.line, label, score, err)
			}
		case errors.As(err, &refused):
			if refused.Message != c.refused {
				t.Errorf("%q: refused %q, want %q", c.line, refused.Message, c.refused)
			}
		default:
			if err != nil || label != c.label || score != c.score || c.refused != "" {
				t.Errorf("%q: got %q %v %v, want %q %v", c.line, label, score, err, c.label, c.score)
			}
		}
	}
}

// A process that died between requests is replaced when the next request
// comes, which it answers.
func TestExternalDiedWhileIdle(t *testing.T) {
	e := startSizes(t, ExternalConfig{Processes: 1})
	s := <-e.slots
	p := s.proc
	e.slots <- s
	if err := syscall.Kill(p.pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.exited
	label, _, err := e.RecognizeBytes(context.Background(), photo(t))
	if err != nil || label != "jpeg-64x48" {
		t.Fatalf("got %q %v, want jpeg-64x48", label, err)
	}
	if e.Restarts() != 1 {
		t.Errorf("%d restarts, want 1", e.Restarts())
	}
}
