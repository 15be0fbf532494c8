package recognize

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"log/slog"

	"github.com/surgeml/surge/internal/testenv"
)

// sizesModel is the reference model process, testdata/models/sizes.py.
func sizesModel(t *testing.T) []string { return testenv.SizesModel(t) }

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

// png7x3 is a 7×3 PNG, which the sizes model answers png-7x3.
func png7x3(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, image.NewGray(image.Rect(0, 0, 7, 3))); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// A process that misbehaves with its output costs at most the request
// timeout and a restart: the request it was answering gets an error that
// says what happened, and the next one, on the same External, its answer
// (issue 23: a 70,000-character answer line, or a closed stdout, wedged
// the worker for ever). A long stderr line is logged cut, and breaks
// nothing.
func TestExternalMisbehavingOutput(t *testing.T) {
	const timeout = 3 * time.Second
	for _, c := range []struct {
		env, value string
		want       string // in the PNG's error; "" if it is answered
	}{
		{"SIZES_LONG", "answer", "a line over 64 KiB"},
		{"SIZES_CLOSE_STDOUT", "1", "closed its output"},
		{"SIZES_LONG", "stderr", ""},
	} {
		t.Run(c.env+"="+c.value, func(t *testing.T) {
			t.Setenv(c.env, c.value)
			var logs testenv.Buffer
			cfg := ExternalConfig{Command: sizesModel(t), Processes: 1, RequestTimeout: timeout}
			e, err := StartExternal(context.Background(), cfg, slog.New(slog.NewTextHandler(&logs, nil)))
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			start := time.Now()
			label, _, err := e.RecognizeBytes(context.Background(), png7x3(t))
			took := time.Since(start)
			t.Logf("PNG: %q %v, in %v", label, err, took.Round(time.Millisecond))
			switch {
			case c.want == "" && (err != nil || label != "png-7x3"):
				t.Errorf("PNG: %q %v, want png-7x3", label, err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Errorf("PNG: %q %v, want an error saying %q", label, err, c.want)
			}
			if took > timeout+3*time.Second {
				t.Errorf("the PNG took %v, over the request timeout (%v) and a restart", took, timeout)
			}
			if label, _, err := e.RecognizeBytes(context.Background(), photo(t)); err != nil || label != "jpeg-64x48" {
				t.Errorf("the JPEG after it: %q %v, want jpeg-64x48", label, err)
			}
			if c.want == "" && !strings.Contains(logs.String(), "cut_bytes=") {
				t.Errorf("the long stderr line was not logged cut:\n%.2000s", logs.String())
			}
		})
	}
}

// A ready line over 64 KiB fails the start at once, and a start waiting
// for its ready line stops when its caller gives up (issue 23: it
// ignored its start timeout and every Ctrl-C).
func TestExternalLongReadyLine(t *testing.T) {
	t.Setenv("SIZES_LONG", "ready")
	start := time.Now()
	_, err := StartExternal(context.Background(), ExternalConfig{Command: sizesModel(t), Processes: 1, StartTimeout: 10 * time.Second}, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "over 64 KiB") || time.Since(start) > 5*time.Second {
		t.Errorf("got %v after %v, want a line over 64 KiB within seconds", err, time.Since(start))
	}

	t.Setenv("SIZES_LONG", "")
	t.Setenv("SIZES_START_DELAY", "30")
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	start = time.Now()
	_, err = StartExternal(ctx, ExternalConfig{Command: sizesModel(t), Processes: 1, StartTimeout: time.Minute}, slog.New(slog.DiscardHandler))
	if !errors.Is(err, context.Canceled) || time.Since(start) > 5*time.Second {
		t.Errorf("got %v after %v, want it cancelled at once", err, time.Since(start))
	}
}

// A model process does not outlive the process that started it, even one
// that ignores the end of its input and SIGTERM, when that process is
// killed and cannot stop it.
func TestExternalModelDiesWithItsParent(t *testing.T) {
	if os.Getenv("SURGE_TEST_MODEL_PARENT") == "1" {
		t.Skip("the parent's own run, in TestExternalModelParent")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestExternalModelParent$", "-test.v")
	cmd.Env = append(os.Environ(), "SURGE_TEST_MODEL_PARENT=1", "SIZES_IGNORE_EOF=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var modelPID int
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "model pid "); ok {
			modelPID, _ = strconv.Atoi(v)
			break
		}
	}
	if modelPID == 0 {
		cmd.Process.Kill()
		t.Fatalf("the parent named no model process (%v)", sc.Err())
	}
	cmd.Process.Kill()
	cmd.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for alive(modelPID) {
		if time.Now().After(deadline) {
			syscall.Kill(modelPID, syscall.SIGKILL)
			t.Fatalf("model process %d outlived its parent by 5 s", modelPID)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestExternalModelParent is the parent TestExternalModelDiesWithItsParent
// kills: it starts a model and waits.
func TestExternalModelParent(t *testing.T) {
	if os.Getenv("SURGE_TEST_MODEL_PARENT") != "1" {
		t.Skip("run by TestExternalModelDiesWithItsParent")
	}
	e, err := StartExternal(context.Background(), ExternalConfig{Command: sizesModel(t), Processes: 1}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	s := <-e.slots
	fmt.Printf("model pid %d\n", s.proc.pid())
	select {}
}

// alive says whether pid is a process that has not ended (a zombie has).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return !strings.HasPrefix(rest, "Z")
}
