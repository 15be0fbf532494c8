package recognize

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/png"
	"io"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/surgeml/surge/events"
)

// ExternalPrefix starts the name of every external model, so that its
// results and cached answers never pass for an ONNX model's.
const ExternalPrefix = "ext:"

// Defaults of ExternalConfig's timeouts.
const (
	DefaultStartTimeout   = time.Minute
	DefaultRequestTimeout = 30 * time.Second
)

// maxLine bounds a line from a model process: a longer one is garbage.
const maxLine = 64 << 10

// ExternalConfig runs a model as child processes speaking the line
// protocol of docs/models.md.
type ExternalConfig struct {
	Command []string // argv of the model process
	// Processes is how many run at once, each answering one request at a
	// time [runtime.GOMAXPROCS].
	Processes      int
	StartTimeout   time.Duration // from start to the ready line [DefaultStartTimeout]
	RequestTimeout time.Duration // from request line to answer line [DefaultRequestTimeout]
}

// RefusedError is a model's "error" answer: the image is refused, and
// asking again would not change that.
type RefusedError struct{ Message string }

func (e *RefusedError) Error() string { return "the model refused the image: " + e.Message }

// Refused marks the error as permanent for callers that cannot import this
// package's types (labeling).
func (e *RefusedError) Refused() bool { return true }

// External is a Recognizer whose model runs in child processes. A process
// that exits, answers garbage or takes longer than RequestTimeout is
// killed and restarted (with backoff after consecutive failures), and the
// request it was answering is asked once more of the new process.
type External struct {
	cfg   ExternalConfig
	log   *slog.Logger
	name  string
	dir   string        // private directory of the images handed to the model
	slots chan *extSlot // idle slots; a caller takes one per request
	// starts runs cmd.Start on one OS thread that lives as long as the
	// External: a process's parent-death signal fires when the thread
	// that started it ends, and Go ends threads it no longer needs (a
	// model killed as its starter's thread went was a second restart).
	starts chan func()

	mu       sync.Mutex
	restarts int
}

// extSlot is one process's place; the process is nil until (re)started.
type extSlot struct {
	proc    *extProc
	backoff events.Backoff
}

// StartExternal starts cfg.Processes model processes and waits for each to
// say it is ready. All of them must name the same model.
func StartExternal(ctx context.Context, cfg ExternalConfig, log *slog.Logger) (*External, error) {
	if len(cfg.Command) == 0 {
		return nil, errors.New("external model: no command")
	}
	if cfg.Processes < 1 {
		cfg.Processes = runtime.GOMAXPROCS(0)
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = DefaultStartTimeout
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	dir, err := os.MkdirTemp("", "surge-model-*") // 0700: the images are the uploads
	if err != nil {
		return nil, fmt.Errorf("external model: making its image directory: %w", err)
	}
	e := &External{cfg: cfg, log: log, dir: dir, slots: make(chan *extSlot, cfg.Processes), starts: make(chan func())}
	go e.startProcesses()
	procs := make([]*extProc, cfg.Processes)
	errs := make([]error, cfg.Processes)
	var wg sync.WaitGroup
	for i := range procs {
		wg.Go(func() { procs[i], errs[i] = e.start(ctx) })
	}
	wg.Wait()
	for _, p := range procs {
		e.slots <- &extSlot{proc: p, backoff: events.Backoff{Min: 100 * time.Millisecond, Max: 5 * time.Second}}
	}
	// The processes run one command, so their failures are alike: the
	// first says it.
	failed := 0
	for _, perr := range errs {
		if perr != nil {
			if failed == 0 {
				err = perr
			}
			failed++
		}
	}
	if failed > 1 {
		err = fmt.Errorf("%w (%d of %d processes failed to start)", err, failed, len(errs))
	}
	for _, p := range procs {
		if err == nil && p.name != procs[0].name {
			err = fmt.Errorf("external model: one process said it is %q, another %q", procs[0].name, p.name)
		}
	}
	if err != nil {
		e.Close()
		return nil, err
	}
	e.name = ExternalPrefix + procs[0].name
	log.Info("external model ready", "model", e.name, "processes", cfg.Processes, "command", cfg.Command)
	return e, nil
}

// Name is the model's name from its ready line, after ExternalPrefix.
func (e *External) Name() string { return e.name }

// Restarts is how many times a process has been started again.
func (e *External) Restarts() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.restarts
}

// RecognizeBytes hands an encoded image to a model process: it is written
// to a private file (0600, removed after), whose path the process reads.
// A refusal is a *RefusedError.
func (e *External) RecognizeBytes(ctx context.Context, data []byte) (string, float64, error) {
	f, err := os.CreateTemp(e.dir, "image-*")
	if err != nil {
		return "", 0, fmt.Errorf("external model: writing the image: %w", err)
	}
	defer os.Remove(f.Name())
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", 0, fmt.Errorf("external model: writing the image: %w", err)
	}
	return e.ask(ctx, f.Name())
}

// Recognize encodes img as PNG for the model process, for callers that
// hold a decoded image; the worker hands over the upload's own bytes.
func (e *External) Recognize(img image.Image) (string, float64, error) {
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return "", 0, fmt.Errorf("external model: encoding the image: %w", err)
	}
	return e.RecognizeBytes(context.Background(), buf.Bytes())
}

// ask puts path to an idle process, trying a second, fresh process if the
// first one fails.
func (e *External) ask(ctx context.Context, path string) (string, float64, error) {
	var s *extSlot
	select {
	case s = <-e.slots:
	case <-ctx.Done():
		return "", 0, ctx.Err()
	}
	defer func() { e.slots <- s }()
	var err error
	for attempt := range 2 {
		if s.proc == nil {
			if s.proc, err = e.restart(ctx, s); err != nil {
				continue
			}
		}
		var label string
		var score float64
		label, score, err = s.proc.ask(ctx, path, e.cfg.RequestTimeout)
		var refused *RefusedError
		if err == nil || errors.As(err, &refused) {
			s.backoff.Success()
			return label, score, err
		}
		// Whatever it was doing, the process is out of step with its
		// requests now: it is not asked anything again.
		pid := s.proc.pid()
		s.proc.kill()
		s.proc = nil
		if ctx.Err() != nil {
			return "", 0, err
		}
		e.log.Warn("model process failed; a new one takes its place", "model_pid", pid, "err", err, "attempt", attempt+1)
	}
	return "", 0, err
}

// restart starts a process in s's place. The first restart after an
// answer is at once; the slot's backoff paces a process that keeps failing.
func (e *External) restart(ctx context.Context, s *extSlot) (*extProc, error) {
	if d := s.backoff.Failure(); d > s.backoff.Min {
		events.Sleep(ctx, d)
	}
	e.mu.Lock()
	e.restarts++
	e.mu.Unlock()
	p, err := e.start(ctx)
	if err != nil {
		e.log.Error("restarting the model process", "err", err)
		return nil, err
	}
	e.log.Info("model process restarted", "model_pid", p.pid())
	if ExternalPrefix+p.name != e.name {
		p.kill()
		return nil, fmt.Errorf("external model: restarted process says it is %q, not %q", p.name, strings.TrimPrefix(e.name, ExternalPrefix))
	}
	return p, nil
}

// Close stops the processes, once no request is in flight, (closing their input, then killing those
// still running a few seconds later) and removes the image directory.
func (e *External) Close() error {
	var wg sync.WaitGroup
	for range cap(e.slots) {
		s := <-e.slots
		if s.proc != nil {
			wg.Go(s.proc.stop)
		}
	}
	wg.Wait()
	close(e.starts) // every process is stopped: its thread may go
	return os.RemoveAll(e.dir)
}

// startProcesses runs the starts asked of it, on a thread of its own.
func (e *External) startProcesses() {
	runtime.LockOSThread()
	for start := range e.starts {
		start()
	}
}

// extProc is one running model process.
type extProc struct {
	cmd    *exec.Cmd
	name   string
	stdin  io.WriteCloser
	lines  chan string   // stdout, a line at a time; closed at its end. Buffered: a line nobody asked for waits there to be seen
	exited chan struct{} // closed once the process has been waited for
	quit   chan struct{} // closed when no one will read lines any more
	once   sync.Once
	// outErr says why stdout ended, once lines is closed: a line over
	// maxLine, or the process closed it.
	outErr error
	err    error // how the process exited, once exited is closed
}

func (e *External) start(ctx context.Context) (*extProc, error) {
	cmd := exec.Command(e.cfg.Command[0], e.cfg.Command[1:]...)
	// A group of its own, so a kill reaches whatever it started too (a
	// shell's children would otherwise hold its stdout open); and killed
	// with the worker, should the worker die without stopping it (a model
	// that ignores the end of its input would otherwise outlive it).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	started := make(chan error, 1)
	e.starts <- func() { started <- cmd.Start() }
	if err := <-started; err != nil {
		return nil, fmt.Errorf("external model: starting %q: %w", e.cfg.Command, err)
	}
	p := &extProc{cmd: cmd, stdin: stdin, lines: make(chan string, 1), exited: make(chan struct{}), quit: make(chan struct{})}
	log := e.log.With("model_pid", cmd.Process.Pid)
	var logged sync.WaitGroup
	// Stderr is read to its end whatever it holds, or the process would
	// block writing it; a long line is logged cut.
	logged.Go(func() {
		readLines(stderr, maxStderrLine, func(line string, cut int) {
			if cut > 0 {
				log.Warn("model process", "stderr", line, "cut_bytes", cut)
				return
			}
			log.Info("model process", "stderr", line)
		})
	})
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 4096), maxLine)
		for sc.Scan() {
			select {
			case p.lines <- strings.TrimSuffix(sc.Text(), "\r"):
			case <-p.quit:
			}
		}
		p.outErr = errors.New("it closed its output")
		if errors.Is(sc.Err(), bufio.ErrTooLong) {
			p.outErr = fmt.Errorf("it wrote a line over %d KiB", maxLine>>10)
		} else if sc.Err() != nil {
			p.outErr = fmt.Errorf("reading its output: %w", sc.Err())
		}
		close(p.lines)
		logged.Wait()
		p.err = cmd.Wait()
		if p.err == nil {
			p.err = errors.New("exited")
		}
		close(p.exited)
	}()
	ready, err := p.line(ctx, e.cfg.StartTimeout)
	if err != nil {
		p.kill()
		return nil, fmt.Errorf("external model %q: waiting for its ready line: %w", e.cfg.Command, err)
	}
	name, ok := strings.CutPrefix(ready, "ready ")
	if !ok || strings.TrimSpace(name) == "" || strings.Contains(name, "\t") {
		p.kill()
		return nil, fmt.Errorf("external model %q: its first line was %q, want \"ready <model name>\"", e.cfg.Command, clip(ready))
	}
	p.name = strings.TrimSpace(name)
	return p, nil
}

func (p *extProc) pid() int { return p.cmd.Process.Pid }

// line waits up to timeout for the process's next line.
func (p *extProc) line(ctx context.Context, timeout time.Duration) (string, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case l, ok := <-p.lines:
		if !ok {
			return "", p.ended()
		}
		return l, nil
	case <-t.C:
		return "", fmt.Errorf("no answer within %v", timeout)
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// ended says why stdout ended: how the process exited, if it does so
// within a moment; else what it did to its output. It does not wait for
// a process that stays alive without it.
func (p *extProc) ended() error {
	select {
	case <-p.exited:
		return fmt.Errorf("the process ended: %w", p.err)
	case <-time.After(time.Second):
		return fmt.Errorf("the process is no longer answering: %w", p.outErr)
	}
}

// maxStderrLine is how much of a stderr line is logged.
const maxStderrLine = 4 << 10

// readLines calls fn with each line of r, without its line ending, cut to
// max bytes (cut says how many were left out), until r ends.
func readLines(r io.Reader, max int, fn func(line string, cut int)) {
	br := bufio.NewReaderSize(r, max)
	var line []byte
	cut := 0
	for {
		chunk, err := br.ReadSlice('\n')
		chunk = bytes.TrimSuffix(chunk, []byte("\n"))
		if room := max - len(line); len(chunk) > room {
			line, cut = append(line, chunk[:room]...), cut+len(chunk)-room
		} else {
			line = append(line, chunk...)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if len(line) > 0 || cut > 0 {
			fn(strings.TrimSuffix(string(line), "\r"), cut)
		}
		if err != nil {
			return
		}
		line, cut = line[:0], 0
	}
}

// ask sends one request line and reads its answer.
func (p *extProc) ask(ctx context.Context, path string, timeout time.Duration) (string, float64, error) {
	// A line before the request is one answer too many for the last: the
	// answers would be off by one from here on. (Best effort: it is seen
	// if it has arrived by now.)
	select {
	case l, ok := <-p.lines:
		if ok {
			return "", 0, fmt.Errorf("the process wrote %q unasked: one answer line per request", clip(l))
		}
		return "", 0, p.ended()
	default:
	}
	if _, err := io.WriteString(p.stdin, path+"\n"); err != nil {
		return "", 0, fmt.Errorf("sending the request: %w", err)
	}
	answer, err := p.line(ctx, timeout)
	if err != nil {
		return "", 0, err
	}
	return parseAnswer(answer)
}

// parseAnswer reads "<label>\t<score>" or "error\t<message>".
func parseAnswer(line string) (string, float64, error) {
	label, rest, ok := strings.Cut(line, "\t")
	if ok && label == "error" {
		return "", 0, &RefusedError{Message: rest}
	}
	score, err := strconv.ParseFloat(rest, 64)
	if !ok || label == "" || err != nil || math.IsNaN(score) || math.IsInf(score, 0) {
		return "", 0, fmt.Errorf("the process answered %q, want \"<label>\\t<score>\" or \"error\\t<message>\"", clip(line))
	}
	return label, score, nil
}

func clip(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}

// kill ends the process group at once and waits for it.
func (p *extProc) kill() {
	p.once.Do(func() { close(p.quit) })
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.exited
}

// stop closes the process's input, which asks it to exit, and kills it if
// it has not within a few seconds.
func (p *extProc) stop() {
	p.stdin.Close()
	select {
	case <-p.exited:
	case <-time.After(3 * time.Second):
		p.kill()
	}
}
