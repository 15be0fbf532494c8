package localrun_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/png"
	"io"
	"log/slog"
	"math/rand/v2"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/surgeml/surge/events"
	"github.com/surgeml/surge/internal/backend"
	"github.com/surgeml/surge/internal/embedded"
	"github.com/surgeml/surge/internal/frontend"
	"github.com/surgeml/surge/internal/localrun"
	"github.com/surgeml/surge/internal/testenv"
	"golang.org/x/sys/unix"
)

// built holds the real binaries, built once for all tests.
var built string

func TestMain(m *testing.M) { testenv.MainWithBinaries(m, &built) }

// startWith runs the system cfg describes, stopped when the test ends.
func startWith(t *testing.T, cfg localrun.Config) *localrun.System {
	t.Helper()
	sys, err := localrun.Start(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := sys.Stop(context.Background()); err != nil {
			t.Errorf("stopping: %v", err)
		}
	})
	return sys
}

// bin is where the binaries are; under -short none are built, and the
// test skips.
func bin(t testing.TB) string { return testenv.Built(t, built) }

const maxWorkers = 19

// start runs the whole system from the real binaries; the model and
// runtime come from the shared directory and the test cache.
func start(t *testing.T, visibility time.Duration, workerArgs ...string) *localrun.System {
	t.Helper()
	args := append([]string{"-ort-lib", testenv.RuntimeLib(t), "-model", testenv.Model(t).Path}, workerArgs...)
	return startWith(t, localrun.Config{
		Bin:          bin(t),
		Backend:      backend.Config{Kind: "local", Prefix: "e2e", DataDir: t.TempDir(), Visibility: visibility, MaxReceives: 5},
		Host:         "127.0.0.1",
		MaxWorkers:   maxWorkers,
		Tick:         time.Second,
		ScaleInDelay: time.Second,
		WorkerArgs:   args,
	})
}

func status(t *testing.T, url string) frontend.Status {
	t.Helper()
	resp, err := http.Get(url + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st frontend.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

// fleetWatch samples /status every 100 ms, as the course graders do
// every 2 s, until stopped.
type fleetWatch struct {
	mu      sync.Mutex
	samples []sample
	stop    func()
}

type sample struct {
	at      time.Time
	running int
}

func watch(t *testing.T, url string) *fleetWatch {
	ctx, cancel := context.WithCancel(context.Background())
	w := &fleetWatch{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			st := status(t, url)
			w.mu.Lock()
			w.samples = append(w.samples, sample{time.Now(), st.Fleet.Running})
			w.mu.Unlock()
			time.Sleep(100 * time.Millisecond)
		}
	}()
	w.stop = func() { cancel(); <-done }
	t.Cleanup(w.stop)
	return w
}

func (w *fleetWatch) peak() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	peak := 0
	for _, s := range w.samples {
		peak = max(peak, s.running)
	}
	return peak
}

// afterRun checks what docs/protocol.md's graders check once the answers are
// in: the fleet back at zero within 5 s, both queues empty, one object per
// distinct file name in each bucket.
func afterRun(t *testing.T, sys *localrun.System, w *fleetWatch, sent []string) {
	t.Helper()
	last := time.Now()
	for status(t, sys.URL).Fleet.Running != 0 {
		if time.Since(last) > 5*time.Second {
			t.Fatalf("%d workers still running 5s after the last answer", status(t, sys.URL).Fleet.Running)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("fleet back to 0 %v after the last answer", time.Since(last).Round(10*time.Millisecond))
	w.stop()
	if peak := w.peak(); peak <= 1 || peak > maxWorkers {
		t.Fatalf("fleet peaked at %d workers, want 2..%d", peak, maxWorkers)
	}
	w.mu.Lock()
	first := w.samples[0].running
	w.mu.Unlock()
	if first != 0 {
		t.Fatalf("fleet started at %d workers, want 0", first)
	}
	st := status(t, sys.URL)
	if st.RequestQueue.Backlog() != 0 || st.ResponseQueue.Backlog() != 0 {
		t.Fatalf("queues not empty: request %+v, response %+v", st.RequestQueue, st.ResponseQueue)
	}
	names, stems := map[string]bool{}, map[string]bool{}
	for _, f := range sent {
		names[events.ObjectKey(filepath.Base(f))] = true
		stems[events.Stem(f)] = true
	}
	ctx := context.Background()
	in, err := sys.Backends.Inputs.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out, err := sys.Backends.Outputs.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(in) != len(names) || len(out) != len(stems) {
		t.Fatalf("buckets hold %d inputs and %d outputs, want %d and %d", len(in), len(out), len(names), len(stems))
	}
	for _, k := range in {
		if !names[k] {
			t.Fatalf("unexpected input object %q", k)
		}
	}
}

// Gallery mode, enrolled from the 100-face set with the enroll command,
// answers all 1000 of the 1000-face set at 100 concurrent requests, and the
// fleet grows from 0, stays under the cap and returns to 0.
func TestFaces1000InGalleryMode(t *testing.T) {
	gallery := testenv.EnrollFaces(t, bin(t))
	sys := start(t, 30*time.Second, "-gallery", gallery)
	w := watch(t, sys.URL)
	time.Sleep(300 * time.Millisecond) // a sample of the idle fleet first
	expected := testenv.Labels(t, "datasets", "faces", "face_images_1000.csv")
	sent := testenv.Images(t, "datasets", "faces", "face_images_1000")
	rep := testenv.Workload(t, sys.URL, sent, expected)
	if rep.Correct != 1000 {
		t.Fatalf("%d correct of 1000", rep.Correct)
	}
	afterRun(t, sys, w, sent)
	t.Logf("fleet peaked at %d", w.peak())
}

// Classification mode: the darknet photos get the expected classes, and
// every imagenet-100 answer under 100 concurrent requests equals what the
// classify command prints for the same file.
func TestClassificationMatchesClassifyCommand(t *testing.T) {
	sent := testenv.Images(t, "datasets", "imagenet-100", "images")
	classify := exec.Command(filepath.Join(bin(t), "surge"), append([]string{"classify",
		"-ort-lib", testenv.RuntimeLib(t), "-models", testenv.Path(t, "models")}, sent...)...)
	classify.Stderr = os.Stderr
	out, err := classify.Output()
	if err != nil {
		t.Fatalf("classify: %v", err)
	}
	direct := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		stem, label, _ := strings.Cut(line, ":")
		direct[stem] = label
	}
	if len(direct) != 100 {
		t.Fatalf("classify printed %d answers", len(direct))
	}

	sys := start(t, 30*time.Second)
	w := watch(t, sys.URL)
	time.Sleep(300 * time.Millisecond)
	rep := testenv.Workload(t, sys.URL, sent, direct)
	if rep.Correct != 100 {
		t.Fatalf("%d of 100 pipeline answers equal classify's", rep.Correct)
	}
	afterRun(t, sys, w, sent)

	darknet := testenv.Workload(t, sys.URL, []string{
		testenv.Path(t, "images", "darknet", "dog.jpg"),
		testenv.Path(t, "images", "darknet", "eagle.jpg"),
	}, nil)
	for _, o := range darknet.Outcomes {
		switch o.Stem {
		case "dog":
			if !slices.Contains([]string{"Alaskan Malamute", "husky", "Siberian Husky"}, o.Label) {
				t.Errorf("dog.jpg: %q, want a malamute or husky", o.Answer)
			}
		case "eagle":
			if o.Label != "bald eagle" {
				t.Errorf("eagle.jpg: %q, want bald eagle", o.Answer)
			}
		}
	}
}

// A worker killed with SIGKILL while it holds a request loses nothing: the
// request becomes visible after its timeout and another worker answers it.
func TestWorkerKilledMidRun(t *testing.T) {
	sys := start(t, 3*time.Second)
	sent := testenv.Images(t, "datasets", "faces", "face_images_1000")
	killed := make(chan string, 1)
	go func() {
		defer close(killed)
		for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			in, _ := sys.Fleet.List(context.Background())
			for _, i := range in {
				if i.State == events.Running && !i.Idle {
					if sys.Fleet.Kill(i.Name) == nil {
						killed <- i.Name
						return
					}
				}
			}
		}
	}()
	rep := testenv.Workload(t, sys.URL, sent, nil)
	name, ok := <-killed
	if !ok {
		t.Fatal("no busy worker was found to kill")
	}
	var crash *struct{ code int }
	for _, e := range sys.Fleet.Exits() {
		if e.Name == name && !e.Drained {
			crash = &struct{ code int }{e.ExitCode}
		}
	}
	if crash == nil {
		t.Fatalf("the kill of %s is not recorded", name)
	}
	t.Logf("killed %s mid-run; all %d requests answered (p99 %v)", name, rep.Completed, rep.P99.Round(time.Millisecond))
}

// `surge run` is what `make run` starts: it serves, and Ctrl-C (SIGINT)
// stops every process it started.
func TestRunCommandStopsCleanly(t *testing.T) {
	data := t.TempDir()
	cmd := exec.Command(filepath.Join(bin(t), "surge"), "run", "-data", data, "-port", "0", "-host", "127.0.0.1",
		"-ort-lib", testenv.RuntimeLib(t), "-models", testenv.Path(t, "models"), "-metrics-addr", "127.0.0.1:0")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var url string
	for deadline := time.Now().Add(30 * time.Second); url == ""; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("no URL announced:\n%s", stderr.String())
		}
		if _, rest, ok := strings.Cut(stderr.String(), "Surge is running at "); ok {
			url, _, _ = strings.Cut(rest, " ")
		}
	}
	rep := testenv.Workload(t, url, []string{testenv.Path(t, "images", "darknet", "eagle.jpg")}, map[string]string{"eagle": "bald eagle"})
	if rep.Correct != 1 {
		t.Fatal("eagle.jpg not answered")
	}
	// -metrics-addr serves the scaler's decisions, at the address it logs.
	_, rest, _ := strings.Cut(stderr.String(), `"serving the scaler's metrics","addr":"`)
	scalerMetrics, _, _ := strings.Cut(rest, `"`)
	if launches, ok := scrape(t, scalerMetrics, "surge_scaler_launches_total"); !ok || launches < 1 {
		t.Errorf("scaler metrics at %q: %v launches, want at least the one that answered", scalerMetrics, launches)
	}
	pids := descendants(cmd.Process.Pid)
	if len(pids) < 2 {
		t.Fatalf("expected a web tier and a worker under surge run, found %v", pids)
	}
	cmd.Process.Signal(os.Interrupt)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("surge run exited with %v:\n%s", err, stderr.String())
	}
	for _, pid := range pids {
		if syscall.Kill(pid, 0) == nil {
			t.Errorf("process %d outlived surge run", pid)
		}
	}
}

// descendants lists the processes whose parent is pid.
func descendants(pid int) []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		var child, parent int
		fmt.Sscan(e.Name(), &child)
		if len(fields) > 1 {
			fmt.Sscan(fields[1], &parent)
		}
		if parent == pid {
			out = append(out, child)
		}
	}
	return out
}

// The newest rubric's warm run on the embedded system: after the face
// workload, with the input bucket emptied, the queues empty and the fleet
// at 0, the same 100 uploads are all answered from the results table: the
// fleet stays at 0, and the table still holds one item per file name.
func TestWarmRunIsAnsweredFromTheTable(t *testing.T) {
	gallery := testenv.EnrollFaces(t, bin(t))
	sys := start(t, 30*time.Second, "-gallery", gallery)
	files, expected := testenv.Images(t, "datasets", "faces", "face_images_100"), testenv.Labels(t, "datasets", "faces", "face_images_100.csv")
	w := watch(t, sys.URL)
	time.Sleep(300 * time.Millisecond)
	if rep := testenv.Workload(t, sys.URL, files, expected); rep.Correct != 100 {
		t.Fatalf("cold run: %d of 100 correct", rep.Correct)
	}
	afterRun(t, sys, w, files)
	table := sys.Backends.Table.(*embedded.Table)
	ctx := context.Background()
	if n, err := table.Len(ctx); err != nil || n != 100 {
		t.Fatalf("table holds %d items after the cold run, want 100 (%v)", n, err)
	}

	keys, err := sys.Backends.Inputs.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if err := sys.Backends.Inputs.Delete(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	before := status(t, sys.URL).ResultsTable
	warm := watch(t, sys.URL)
	rep := testenv.Workload(t, sys.URL, files, expected)
	warm.stop()
	if rep.Correct != 100 {
		t.Fatalf("warm run: %d of 100 correct", rep.Correct)
	}
	after := status(t, sys.URL)
	t.Logf("warm run: 100 requests in %v, average %v (the grader's figure), p99 %v; fleet peak %d; table hits %d",
		rep.Duration.Round(time.Millisecond), (rep.Duration / 100).Round(time.Microsecond), rep.P99.Round(time.Microsecond), warm.peak(), after.ResultsTable.Hits-before.Hits)
	if warm.peak() != 0 || after.ResultsTable.Hits-before.Hits != 100 {
		t.Fatalf("warm run: fleet peaked at %d, %d table hits; want 0 and 100", warm.peak(), after.ResultsTable.Hits-before.Hits)
	}
	if keys, err := sys.Backends.Inputs.List(ctx); err != nil || len(keys) != 100 {
		t.Fatalf("input bucket after the warm run: %d objects, want 100 (%v)", len(keys), err)
	}
	if n, err := table.Len(ctx); err != nil || n != 100 {
		t.Fatalf("table holds %d items after the warm run, want 100 (%v)", n, err)
	}
}

// An embedded table another process holds locked: uploads are answered
// through the queue, and the web tier says so once in its log and in
// /status.
func TestLockedTableStillAnswers(t *testing.T) {
	sys := start(t, 30*time.Second)
	table := sys.Backends.Table.(*embedded.Table)
	testenv.LockSQLite(t, table.Path())
	eagle := testenv.Path(t, "images", "darknet", "eagle.jpg")
	var sent []string
	for i := range 3 {
		link := filepath.Join(t.TempDir(), fmt.Sprintf("eagle-%d.jpg", i))
		if err := os.Symlink(eagle, link); err != nil {
			t.Fatal(err)
		}
		sent = append(sent, link)
	}
	rep := testenv.Workload(t, sys.URL, sent, map[string]string{"eagle-0": "bald eagle", "eagle-1": "bald eagle", "eagle-2": "bald eagle"})
	if rep.Correct != 3 {
		t.Fatalf("%d of 3 answered with the table locked", rep.Correct)
	}
	st := status(t, sys.URL).ResultsTable
	if st.Recording.OK || !strings.Contains(st.Recording.Error, "locked") {
		t.Fatalf("/status results_table with the table locked: %+v", st)
	}
	// /status is anyone's to read: it names the table, not where it is
	// (issue 23, defect 8).
	res, err := http.Get(sys.URL + "/status")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if dataDir := filepath.Dir(filepath.Dir(table.Path())); strings.Contains(string(raw), dataDir) || !strings.Contains(string(raw), `"table":"e2e-dynamoDB"`) {
		t.Errorf("/status shows the data directory %s, or not the table's name:\n%s", dataDir, raw)
	}
	logs, err := os.ReadFile(filepath.Join(filepath.Dir(filepath.Dir(table.Path())), "logs", "webtier.log"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(logs), "results table unavailable"); n != 1 {
		t.Fatalf("web tier logged the outage %d times, want once:\n%s", n, logs)
	}
}

// startRun starts `surge run` on data and returns once it announces its
// URL.
func startRun(t *testing.T, data string, args ...string) (*exec.Cmd, string, *testenv.Buffer) {
	t.Helper()
	cmd := exec.Command(filepath.Join(bin(t), "surge"), append([]string{"run", "-data", data, "-port", "0", "-host", "127.0.0.1",
		"-ort-lib", testenv.RuntimeLib(t), "-models", testenv.Path(t, "models")}, args...)...)
	stderr := &testenv.Buffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, rest, ok := strings.Cut(stderr.String(), "Surge is running at "); ok {
			url, _, _ := strings.Cut(rest, " ")
			return cmd, url, stderr
		}
		if time.Now().After(deadline) {
			t.Fatalf("no URL announced:\n%s", stderr)
		}
	}
}

// outcome is what one client got for one file.
type outcome struct {
	file   string
	status int
	body   string
	id     string
	retry  string // Retry-After
	err    error
}

// uploadAll sends every file at once, each on its own connection, and
// reports each client's outcome as it ends.
func uploadAll(url string, files []string) <-chan outcome {
	out := make(chan outcome, len(files))
	client := &http.Client{Timeout: 3 * time.Minute}
	for _, f := range files {
		go func() {
			o := outcome{file: f}
			defer func() { out <- o }()
			data, err := os.ReadFile(f)
			if err != nil {
				o.err = err
				return
			}
			var body bytes.Buffer
			mw := multipart.NewWriter(&body)
			fw, _ := mw.CreateFormFile("inputFile", filepath.Base(f))
			fw.Write(data)
			mw.Close()
			resp, err := client.Post(url+"/", mw.FormDataContentType(), &body)
			if err != nil {
				o.err = err
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			o.status, o.body, o.id, o.retry, o.err = resp.StatusCode, string(b), resp.Header.Get("X-Request-Id"), resp.Header.Get("Retry-After"), err
		}()
	}
	return out
}

// waitOpen waits until every one of n uploads is either answered or held
// open by the web tier, and returns how many are open.
func waitOpen(t *testing.T, url string, n int, answered func() int) int {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if open := status(t, url).Waiting; open+answered() >= n {
			return open
		}
		if time.Now().After(deadline) {
			t.Fatalf("the %d uploads never all arrived", n)
		}
	}
}

// Ctrl-C with ~100 requests still queued: no new uploads are taken, the
// fleet keeps working, every open request is answered, and surge run exits
// 0 leaving no process behind.
func TestCtrlCUnderLoadAnswersEveryOpenRequest(t *testing.T) {
	cmd, url, stderr := startRun(t, t.TempDir(), "-max-workers", "4")
	files := testenv.Images(t, "datasets", "imagenet-100", "images")
	results := uploadAll(url, files)
	var got []outcome
	open := waitOpen(t, url, len(files), func() int { return len(results) })
	if open == 0 {
		t.Fatal("every request was answered before the stop; nothing was left to drain")
	}
	pids := descendants(cmd.Process.Pid)
	cmd.Process.Signal(os.Interrupt)
	t.Logf("Ctrl-C with %d of %d requests open", open, len(files))
	for range files {
		got = append(got, <-results)
	}
	for _, o := range got {
		if o.err != nil || o.status != 200 || !strings.HasPrefix(o.body, events.Stem(o.file)+":") {
			t.Errorf("%s: %d %q %v", filepath.Base(o.file), o.status, o.body, o.err)
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("surge run exited with %v:\n%s", err, stderr)
	}
	for _, pid := range pids {
		if syscall.Kill(pid, 0) == nil {
			t.Errorf("process %d outlived surge run", pid)
		}
	}
}

// A second surge run on a data directory in use fails at once and says
// who holds it; the first keeps serving.
func TestSecondRunOnOneDataDirectoryFails(t *testing.T) {
	data := t.TempDir()
	first, url, _ := startRun(t, data)
	second := exec.Command(filepath.Join(bin(t), "surge"), "run", "-data", data, "-port", "0", "-host", "127.0.0.1",
		"-ort-lib", testenv.RuntimeLib(t), "-models", testenv.Path(t, "models"))
	var stderr testenv.Buffer
	second.Stderr = &stderr
	if err := second.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- second.Wait() }()
	select {
	case err := <-exited:
		want := fmt.Sprintf("data directory %s is in use by surge run (pid %d, started ", data, first.Process.Pid)
		if err == nil || !strings.Contains(stderr.String(), want) {
			t.Fatalf("second surge run: %v, stderr:\n%s\nwant it to fail saying %q", err, stderr.String(), want)
		}
	case <-time.After(10 * time.Second):
		second.Process.Kill()
		<-exited
		t.Fatalf("a second surge run on the same data directory kept running:\n%s", stderr.String())
	}
	testenv.Workload(t, url, []string{testenv.Path(t, "images", "darknet", "eagle.jpg")}, map[string]string{"eagle": "bald eagle"})
	first.Process.Signal(os.Interrupt)
	if err := first.Wait(); err != nil {
		t.Fatalf("first surge run: %v", err)
	}
}

// Stopped while no worker can answer: when the drain timeout ends, every
// open upload is answered 503 with its id, Retry-After and where to fetch
// its result, and the stop says it was not clean. While the system runs
// its data directory is taken. A system started next on the same data
// knows every one of those ids at once (202, not 404), and each resolves
// to its answer.
func TestDrainTimeoutThenRestartResolvesEveryID(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	config := func(workerArgs ...string) localrun.Config {
		return localrun.Config{
			Bin:          bin(t),
			Backend:      backend.Config{Kind: "local", Prefix: "e2e", DataDir: data, Visibility: 30 * time.Second, MaxReceives: 5},
			Host:         "127.0.0.1",
			MaxWorkers:   2,
			Tick:         time.Second,
			ScaleInDelay: time.Second,
			DrainTimeout: 2 * time.Second,
			WorkerArgs:   append([]string{"-ort-lib", testenv.RuntimeLib(t), "-model", testenv.Model(t).Path}, workerArgs...),
		}
	}
	broken, err := localrun.Start(ctx, config("-model", filepath.Join(data, "no-such-model.onnx")), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	var inUse *embedded.InUseError
	if _, err := localrun.Start(ctx, config(), slog.New(slog.DiscardHandler)); !errors.As(err, &inUse) || inUse.Holder.PID != os.Getpid() {
		broken.Stop(ctx)
		t.Fatalf("a second system on the same data directory: %v", err)
	}

	files := testenv.Images(t, "datasets", "imagenet-100", "images")[:40]
	results := uploadAll(broken.URL, files)
	if open := waitOpen(t, broken.URL, len(files), func() int { return len(results) }); open != len(files) {
		t.Fatalf("%d of %d uploads open with no working worker", open, len(files))
	}
	if _, err := broken.Stop(ctx); err == nil {
		t.Error("Stop reported a clean drain although no upload could be answered")
	} else {
		t.Logf("stop: %v", err)
	}
	stems := map[string]string{}
	for range files {
		o := <-results
		if o.err != nil || o.status != 503 || o.id == "" || o.retry == "" || !strings.Contains(o.body, "GET /results/"+o.id) {
			t.Fatalf("%s, open at the drain timeout: %d %q (id %q, Retry-After %q) %v", filepath.Base(o.file), o.status, o.body, o.id, o.retry, o.err)
		}
		stems[o.id] = events.Stem(o.file)
	}

	fixed, err := localrun.Start(ctx, config(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if _, err := fixed.Stop(ctx); err != nil {
			t.Errorf("stopping: %v", err)
		}
	}()
	for id := range stems {
		if r, err := http.Get(fixed.URL + "/results/" + id); err != nil || r.StatusCode == http.StatusNotFound {
			t.Fatalf("GET /results/%s right after the restart: %v %v", id, r.Status, err)
		} else {
			r.Body.Close()
		}
	}
	answeredByID(t, fixed.URL, stems)
}

// A request that every delivery fails to finish (a stand-in, in this test
// process, for a worker that crashes on it each time: it takes each
// delivery and vanishes) is dead-lettered, and the web tier process
// answers its waiting upload with the failure at once, keeps it for GET
// /results/{id}, and counts it in /status.
func TestDeadLetteredRequestIsAnsweredAsFailed(t *testing.T) {
	ctx := context.Background()
	sys, err := localrun.Start(ctx, localrun.Config{
		Bin:        bin(t),
		Backend:    backend.Config{Kind: "local", Prefix: "e2e", DataDir: t.TempDir(), Visibility: time.Second, MaxReceives: 2},
		Host:       "127.0.0.1",
		MaxWorkers: 1,
		// No real worker ever answers.
		WorkerArgs: []string{"-ort-lib", testenv.RuntimeLib(t), "-model", filepath.Join(t.TempDir(), "no-such-model.onnx")},
	}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer sys.Stop(ctx)
	results := uploadAll(sys.URL, []string{testenv.Path(t, "images", "darknet", "eagle.jpg")})
	for delivery := 1; delivery <= 2; delivery++ {
		msgs, err := sys.Backends.Requests.Receive(ctx, 1, 10*time.Second)
		if err != nil || len(msgs) != 1 {
			t.Fatalf("delivery %d: %d messages, %v", delivery, len(msgs), err)
		}
	}
	var o outcome
	select {
	case o = <-results:
	case <-time.After(15 * time.Second):
		t.Fatal("the upload of a dead-lettered request still waits 15s after its last delivery")
	}
	if o.err != nil || o.status != 500 || !strings.Contains(o.body, "dead_lettered") {
		t.Fatalf("upload of a dead-lettered request: %d %q %v", o.status, o.body, o.err)
	}
	r, err := http.Get(sys.URL + "/results/" + o.id)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(r.Body)
	r.Body.Close()
	if r.StatusCode != 500 || !strings.Contains(string(body), "dead_lettered") {
		t.Fatalf("GET /results/%s: %d %q", o.id, r.StatusCode, body)
	}
	if st := status(t, sys.URL); st.DeadLetters.Backlog() != 1 || st.RequestQueue.Backlog() != 0 {
		t.Fatalf("/status: dead letters %+v, request queue %+v", st.DeadLetters, st.RequestQueue)
	}
}

// surge run killed with SIGKILL under load: its web tier, left without a
// fleet, answers every open upload 503 with its id at once instead of
// holding it; a new surge run on the same data starts while it leaves,
// and answers every one of those ids.
func TestRunKilledUnderLoadLosesNoRequest(t *testing.T) {
	data := t.TempDir()
	first, url, _ := startRun(t, data, "-max-workers", "2")
	files := testenv.Images(t, "datasets", "imagenet-100", "images")[:40]
	results := uploadAll(url, files)
	open := waitOpen(t, url, len(files), func() int { return len(results) })
	first.Process.Kill()
	first.Wait()
	t.Logf("killed surge run with %d of %d requests open", open, len(files))
	stems := map[string]string{}
	for range files {
		var o outcome
		select {
		case o = <-results:
		case <-time.After(30 * time.Second):
			t.Fatal("an upload still waits 30s after its surge run was killed")
		}
		switch {
		case o.err == nil && o.status == 200 && strings.HasPrefix(o.body, events.Stem(o.file)+":"):
		case o.err == nil && o.status == 503 && o.id != "" && strings.Contains(o.body, "GET /results/"+o.id):
			stems[o.id] = events.Stem(o.file)
		default:
			t.Fatalf("%s: %d %q %v", filepath.Base(o.file), o.status, o.body, o.err)
		}
	}
	if len(stems) == 0 {
		t.Fatal("every upload was answered before the kill; nothing tested the web tier left alone")
	}
	t.Logf("%d answered 503 with their ids", len(stems))

	second, url, stderr := startRun(t, data, "-max-workers", "2")
	answeredByID(t, url, stems)
	second.Process.Signal(os.Interrupt)
	if err := second.Wait(); err != nil {
		t.Fatalf("second surge run: %v\n%s", err, stderr)
	}
}

// Hurry (surge run's second Ctrl-C) during a long drain: the web tier
// process answers its open uploads 503 with their ids at once.
func TestHurryCutsTheDrainShort(t *testing.T) {
	ctx := context.Background()
	sys, err := localrun.Start(ctx, localrun.Config{
		Bin:          bin(t),
		Backend:      backend.Config{Kind: "local", Prefix: "e2e", DataDir: t.TempDir(), Visibility: 30 * time.Second, MaxReceives: 5},
		Host:         "127.0.0.1",
		MaxWorkers:   1,
		DrainTimeout: time.Hour,
		// No real worker ever answers.
		WorkerArgs: []string{"-ort-lib", testenv.RuntimeLib(t), "-model", filepath.Join(t.TempDir(), "no-such-model.onnx")},
	}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	files := testenv.Images(t, "datasets", "imagenet-100", "images")[:5]
	results := uploadAll(sys.URL, files)
	waitOpen(t, sys.URL, len(files), func() int { return len(results) })
	stopped := make(chan error, 1)
	go func() {
		_, err := sys.Stop(ctx)
		stopped <- err
	}()
	select {
	case o := <-results:
		t.Fatalf("answered with an hour of drain left: %d %q %v", o.status, o.body, o.err)
	case <-time.After(500 * time.Millisecond):
	}
	sys.Hurry()
	for range files {
		select {
		case o := <-results:
			if o.err != nil || o.status != 503 || !strings.Contains(o.body, "GET /results/"+o.id) {
				t.Fatalf("%s when hurried: %d %q %v", filepath.Base(o.file), o.status, o.body, o.err)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("an upload still waits 15s after Hurry")
		}
	}
	if err := <-stopped; err == nil {
		t.Fatal("Stop reported a clean drain")
	}
}

// answeredByID waits (up to 30 s each) for GET /results/{id} to give each
// id's answer, by the stem it must start with.
func answeredByID(t *testing.T, url string, stems map[string]string) {
	t.Helper()
	for id, stem := range stems {
		var status int
		var body []byte
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			r, err := http.Get(url + "/results/" + id)
			if err != nil {
				t.Fatal(err)
			}
			body, _ = io.ReadAll(r.Body)
			r.Body.Close()
			if status = r.StatusCode; status != http.StatusAccepted {
				break
			}
		}
		if status != 200 || !strings.HasPrefix(string(body), stem+":") {
			t.Fatalf("GET /results/%s after the restart: %d %q, want %s's answer", id, status, body, stem)
		}
	}
}

// With 19,000 idle keep-alive connections open to the real web tier, an
// upload is still answered within 2 s (issue 23, defect 6: 20,000 of them
// took every descriptor, and uploads got no answer).
func TestUploadBesideIdleConnections(t *testing.T) {
	testenv.SkipShort(t, "19,000 connections")
	sys := start(t, 30*time.Second)
	eagle := testenv.Path(t, "images", "darknet", "eagle.jpg")
	// A worker up first, so that the upload's time is the web tier's.
	if rep := testenv.Workload(t, sys.URL, []string{eagle}, map[string]string{"eagle": "bald eagle"}); rep.Correct != 1 {
		t.Fatal("no answer before the connections were opened")
	}
	// The web tier gets 10,000 descriptors, fewer than the connections
	// this test opens, as a server whose limit the clients exceed.
	lim := unix.Rlimit{Cur: 10000, Max: 10000}
	if err := unix.Prlimit(localrun.WebPID(sys), unix.RLIMIT_NOFILE, &lim, nil); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // the web tier looks at its limit each second
	addr := strings.TrimPrefix(sys.URL, "http://")
	conns := make([]net.Conn, 0, 19000)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for len(conns) < cap(conns) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("after %d connections: %v", len(conns), err)
		}
		conns = append(conns, c)
		// A request, so that it is a kept-alive connection, idle; and every
		// new connection is served.
		fmt.Fprint(c, "GET /livez HTTP/1.1\r\nHost: surge\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("connection %d got no answer: %v", len(conns), err)
		}
		res.Body.Close()
	}
	// Another name: the worker answers it, not the results table.
	again := filepath.Join(t.TempDir(), "eagle-again.jpg")
	if err := os.Symlink(eagle, again); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	rep := testenv.Workload(t, sys.URL, []string{again}, map[string]string{"eagle-again": "bald eagle"})
	took := time.Since(start)
	t.Logf("upload beside %d idle connections: answered in %v", len(conns), took.Round(time.Millisecond))
	if rep.Correct != 1 || took > 2*time.Second {
		t.Errorf("upload beside %d idle connections: %d correct in %v, want it answered within 2 s", len(conns), rep.Correct, took)
	}
}

// The web tier as a whole stays near its upload memory budget (256 MiB)
// under big uploads: 40 at once under one name, then 100 at once under
// distinct names, each 9.5 MB (issue 23, defect 5: 585 and 688 MB
// resident, with the budget's own accounting never over; 510 and 717 MB
// here before the soft memory limit and the honest accounting of a
// growing buffer), under the budget plus 64 MiB.
func TestWebTierMemoryNearItsBudget(t *testing.T) {
	testenv.SkipShort(t, "1.3 GB of uploads")
	sys := start(t, 60*time.Second)
	rng := rand.New(rand.NewPCG(1, 2))
	img := image.NewRGBA(image.Rect(0, 0, 1820, 1820))
	for i := range img.Pix {
		img.Pix[i] = uint8(rng.Uint32())
		if i%4 == 3 {
			img.Pix[i] = 255
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	data := buf.Bytes()
	t.Logf("each upload is %.1f MB", float64(len(data))/(1<<20))
	send := func(names []string) {
		var wg sync.WaitGroup
		for _, name := range names {
			wg.Go(func() {
				var body bytes.Buffer
				mw := multipart.NewWriter(&body)
				fw, _ := mw.CreateFormFile("inputFile", name)
				fw.Write(data)
				mw.Close()
				res, err := http.Post(sys.URL, mw.FormDataContentType(), &body)
				if err != nil {
					t.Errorf("%s: %v", name, err)
					return
				}
				b, _ := io.ReadAll(res.Body)
				res.Body.Close()
				if res.StatusCode != 200 {
					t.Errorf("%s: %d %q", name, res.StatusCode, b)
				}
			})
		}
		wg.Wait()
	}
	same := make([]string, 40)
	for i := range same {
		same[i] = "noise.png"
	}
	send(same)
	one := localrun.WebPeakRSS(sys)
	distinct := make([]string, 100)
	for i := range distinct {
		distinct[i] = fmt.Sprintf("noise-%03d.png", i)
	}
	send(distinct)
	peak := localrun.WebPeakRSS(sys)
	const bound = 256<<20 + 64<<20
	t.Logf("web tier peak RSS: %.0f MB after 40 under one name, %.0f MB after 100 more under distinct names (bound %d MB)", float64(one)/(1<<20), float64(peak)/(1<<20), bound>>20)
	if peak > bound {
		t.Errorf("the web tier's peak RSS is %.0f MB, over its budget plus 64 MiB (%d MB)", float64(peak)/(1<<20), bound>>20)
	}
}
