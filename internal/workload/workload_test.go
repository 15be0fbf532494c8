package workload

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// reply answers one upload r; try counts this file name's uploads from 1.
type reply func(w http.ResponseWriter, r *http.Request, try int)

// answering is a stand-in web tier on a real socket: it answers each
// upload from a fixed table, so the generator's checking, retrying and
// counting can be tested against known answers (the real web tier is
// driven by the end-to-end tests). It reports the peak number of requests
// in flight and how often each name was uploaded.
func answering(t *testing.T, answers map[string]reply) (url string, peak *atomic.Int32, tries func(name string) int) {
	peak = new(atomic.Int32)
	var inFlight atomic.Int32
	var mu sync.Mutex
	count := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		// Holding each request a little lets the requests overlap, so the
		// peak shows the generator's concurrency.
		time.Sleep(20 * time.Millisecond)
		f, h, err := r.FormFile("inputFile")
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		io.Copy(io.Discard, f)
		mu.Lock()
		count[h.Filename]++
		try := count[h.Filename]
		mu.Unlock()
		answer, ok := answers[h.Filename]
		if !ok {
			http.Error(w, "unexpected file "+h.Filename, http.StatusTeapot)
			return
		}
		answer(w, r, try)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/", peak, func(name string) int {
		mu.Lock()
		defer mu.Unlock()
		return count[name]
	}
}

func text(s string) reply {
	return func(w http.ResponseWriter, _ *http.Request, _ int) { io.WriteString(w, s) }
}

func unavailable(w http.ResponseWriter, _ *http.Request, _ int) {
	http.Error(w, "no", http.StatusServiceUnavailable)
}

// failingFirst fails a name's first upload and answers s afterwards.
func failingFirst(s string) reply {
	return func(w http.ResponseWriter, r *http.Request, try int) {
		if try == 1 {
			unavailable(w, r, try)
			return
		}
		io.WriteString(w, s)
	}
}

// images writes files with these names into a new folder and returns it
// and their paths.
func images(t *testing.T, names ...string) (string, []string) {
	dir := t.TempDir()
	var files []string
	for _, n := range names {
		p := filepath.Join(dir, n)
		if err := os.WriteFile(p, []byte("img "+n), 0o600); err != nil {
			t.Fatal(err)
		}
		files = append(files, p)
	}
	return dir, files
}

func TestRunCountsAndChecks(t *testing.T) {
	_, files := images(t, "a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg", "f.jpg")
	url, peak, _ := answering(t, map[string]reply{
		"a.jpg": text("a:Paul"),
		"b.jpg": text("b: Emily \n"), // the course's clients strip the label
		"c.jpg": text("c:Bob"),       // wrong
		"d.jpg": unavailable,         // failed
		"e.jpg": text("x:Wang"),      // right label, another file's stem
		"f.jpg": text("f Bill"),      // no colon: failed
	})
	var progress atomic.Int32
	rep, err := Run(context.Background(), Config{
		URL: url, Files: files, Concurrency: 3,
		Expected: map[string]string{"a": "Paul", "b": "Emily", "c": "German", "d": "Bill", "e": "Wang", "f": "Bill"},
		Progress: func(attempt, done, total int) {
			if attempt != 1 || total != 6 {
				t.Errorf("progress(%d, %d, %d) without retries", attempt, done, total)
			}
			progress.Store(int32(done))
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Requests != 6 || rep.Completed != 4 || rep.Failed != 2 || rep.Correct != 3 || rep.Wrong != 1 || rep.Misrouted != 1 || !rep.Checked || rep.OK() {
		t.Fatalf("report %+v", rep)
	}
	if len(rep.Attempts) != 1 || rep.Attempts[0] != (Attempt{Number: 1, Tried: 6, Succeeded: 4}) {
		t.Errorf("attempts %+v, want one pass with 4 of 6", rep.Attempts)
	}
	if p := peak.Load(); p != 3 {
		t.Errorf("peak concurrency %d, want 3", p)
	}
	if progress.Load() != 6 {
		t.Errorf("progress ended at %d", progress.Load())
	}
	var out strings.Builder
	rep.Print(&out, map[string]string{"c": "German"})
	for _, want := range []string{
		`wrong  c.jpg: got "Bob", want "German"`, "failed d.jpg (attempts: 1): 503", `misrouted e.jpg: answered "x:Wang"`,
		`failed f.jpg (attempts: 1): answer "f Bill" has no colon`, "Answers naming another file: 1",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

func TestRunRetriesFailures(t *testing.T) {
	_, files := images(t, "a.jpg", "b.jpg", "c.jpg", "d.jpg")
	url, _, tries := answering(t, map[string]reply{
		"a.jpg": text("a:Paul"),
		"b.jpg": failingFirst("b:Emily"),
		"c.jpg": failingFirst("c:Bob"), // answered on retry, wrongly
		"d.jpg": unavailable,
	})
	expected := map[string]string{"a": "Paul", "b": "Emily", "c": "German", "d": "Bill"}
	var passes []Attempt
	rep, err := Run(context.Background(), Config{
		URL: url, Files: files, Expected: expected, Retries: 2,
		Attempted: func(a Attempt) { passes = append(passes, a) },
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []Attempt{{1, 4, 1}, {2, 3, 2}, {3, 1, 0}}
	if len(passes) != len(want) || len(rep.Attempts) != len(want) {
		t.Fatalf("passes %+v, report's %+v, want %+v", passes, rep.Attempts, want)
	}
	for i := range want {
		if passes[i] != want[i] || rep.Attempts[i] != want[i] {
			t.Errorf("pass %d: %+v (report %+v), want %+v", i+1, passes[i], rep.Attempts[i], want[i])
		}
	}
	if rep.Requests != 4 || rep.Completed != 3 || rep.Failed != 1 || rep.Correct != 2 || rep.Wrong != 1 {
		t.Errorf("report %+v", rep)
	}
	for name, n := range map[string]int{"a.jpg": 1, "b.jpg": 2, "c.jpg": 2, "d.jpg": 3} {
		if got := tries(name); got != n {
			t.Errorf("%s uploaded %d times, want %d", name, got, n)
		}
	}
	for _, o := range rep.Outcomes {
		if o.File == "b.jpg" && (o.Attempts != 2 || o.Err != nil || o.Label != "Emily") {
			t.Errorf("b.jpg's outcome %+v, want answered on attempt 2", o)
		}
		if o.File == "d.jpg" && (o.Attempts != 3 || o.Status != http.StatusServiceUnavailable) {
			t.Errorf("d.jpg's outcome %+v, want a 503 on attempt 3", o)
		}
	}
}

func TestRunWithoutLabelsChecksNothing(t *testing.T) {
	_, files := images(t, "a.jpg", "b.jpg")
	url, _, _ := answering(t, map[string]reply{"a.jpg": text("a:Paul"), "b.jpg": text("b:anything")})
	rep, err := Run(context.Background(), Config{URL: url, Files: files})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Checked || rep.Completed != 2 || rep.Correct != 0 || rep.Wrong != 0 || !rep.OK() {
		t.Fatalf("report %+v, want 2 completed, correctness unchecked", rep)
	}
}

// A stopped run counts what it never sent as failed, not as answered.
func TestRunStoppedCountsUnsentAsFailed(t *testing.T) {
	_, files := images(t, "a.jpg", "b.jpg", "c.jpg")
	ctx, cancel := context.WithCancel(context.Background())
	url, _, _ := answering(t, map[string]reply{
		"a.jpg": func(w http.ResponseWriter, _ *http.Request, _ int) { cancel(); io.WriteString(w, "a:Paul") },
		"b.jpg": text("b:Emily"), "c.jpg": text("c:Bob"),
	})
	rep, err := Run(ctx, Config{URL: url, Files: files, Concurrency: 1, Retries: 1})
	if err == nil {
		t.Fatal("a stopped run returned no error")
	}
	if rep.Completed+rep.Failed != 3 || rep.Failed < 2 || len(rep.Attempts) != 1 {
		t.Fatalf("report %+v, want at least b and c failed in one pass", rep)
	}
}

func TestCourseStem(t *testing.T) {
	for name, want := range map[string]string{
		"test_00.jpg":    "test_00",
		"test_65.JPEG":   "test_65",
		"a.b.jpg":        "a",
		"face.v2.tar.gz": "face",
		"noext":          "noext",
	} {
		if got := courseStem(name); got != want {
			t.Errorf("courseStem(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestCourseLabel(t *testing.T) {
	for _, c := range []struct {
		answer, label string
		ok            bool
	}{
		{"test_00:Paul", "Paul", true},
		{"test_65:shower curtain", "shower curtain", true},
		{"a: Paul \t", "Paul", true},
		{"a:b:c", "b", true}, // the second field, as split(':')[1]
		{"a:", "", true},
		{":Paul", "Paul", true},
		{"Paul", "", false},
		{"", "", false},
	} {
		label, ok := courseLabel(c.answer)
		if label != c.label || ok != c.ok {
			t.Errorf("courseLabel(%q) = %q, %v; want %q, %v", c.answer, label, ok, c.label, c.ok)
		}
	}
}

func TestNamesFile(t *testing.T) {
	for _, c := range []struct {
		stem, file string
		want       bool
	}{
		{"test_00", "test_00.jpg", true},
		{"a.b", "a.b.jpg", true},
		{"a", "a.b.jpg", true},
		{"noext", "noext", true},
		{"test_0", "test_00.jpg", false},
		{"test_01", "test_00.jpg", false},
		{"", "test_00.jpg", false},
	} {
		if got := namesFile(c.stem, c.file); got != c.want {
			t.Errorf("namesFile(%q, %q) = %v", c.stem, c.file, got)
		}
	}
}

func TestPercentile(t *testing.T) {
	var lat []time.Duration
	for i := 1; i <= 100; i++ {
		lat = append(lat, time.Duration(i)*time.Millisecond)
	}
	for p, want := range map[int]time.Duration{50: 50 * time.Millisecond, 95: 95 * time.Millisecond, 99: 99 * time.Millisecond, 100: 100 * time.Millisecond} {
		if got := percentile(lat, p); got != want {
			t.Errorf("p%d = %v, want %v", p, got, want)
		}
	}
	if got := percentile(lat[:1], 99); got != time.Millisecond {
		t.Errorf("p99 of one = %v", got)
	}
}

// The steady pace ignores the first and last tenth of the answers: a run
// whose first answer comes after a long fill, then one every 10 ms, with a
// straggler at the end, is read as 100 a second; failures are not counted.
func TestSteadyThroughput(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var out []Outcome
	for i := range 100 {
		at := t0.Add(time.Second + time.Duration(i)*10*time.Millisecond)
		if i == 99 {
			at = at.Add(5 * time.Second)
		}
		out = append(out, Outcome{Answered: at})
	}
	out = append(out, Outcome{Err: errNotSent})
	rep := Report{Completed: 100, Duration: 7 * time.Second, Outcomes: out}
	if got := rep.SteadyThroughput(); got < 99.9 || got > 100.1 {
		t.Errorf("steady throughput %.2f/s, want 100/s", got)
	}
	if got := rep.Throughput(); got > 15 {
		t.Errorf("whole-run throughput %.2f/s: the fill and the straggler should weigh on it", got)
	}
	few := Report{Completed: 1, Duration: time.Second, Outcomes: out[:1]}
	if got := few.SteadyThroughput(); got != 1 {
		t.Errorf("one answer in a second: steady throughput %v, want the whole run's 1/s", got)
	}
}

// A client told to wait out a restarting server keeps trying a refused
// connection until something listens, then gets its answer.
func TestRunWaitsOutRefusedConnections(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens: connections are refused
	dir := t.TempDir()
	file := filepath.Join(dir, "test_00.jpg")
	os.WriteFile(file, []byte("image"), 0o644)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "test_00:Paul") })}
	go func() {
		time.Sleep(500 * time.Millisecond)
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Error(err)
			return
		}
		srv.Serve(ln)
	}()
	defer srv.Close()
	rep, err := Run(context.Background(), Config{URL: "http://" + addr + "/", Files: []string{file}, Expected: map[string]string{"test_00": "Paul"}, Refused: 10 * time.Second})
	if err != nil || rep.Correct != 1 {
		t.Fatalf("with Refused set: %+v, %v", rep.Outcomes, err)
	}
	rep, err = Run(context.Background(), Config{URL: "http://127.0.0.1:1/", Files: []string{file}})
	if err != nil || rep.Failed != 1 || !errors.Is(rep.Outcomes[0].Err, syscall.ECONNREFUSED) {
		t.Fatalf("without Refused: %+v, %v", rep.Outcomes, err)
	}
}

// cutting hangs up on a name's first upload without answering (closed,
// or reset when reset is set, as a dying server's kernel does), then
// answers the way a web tier answers a repeat from its results table:
// in JSON when asked, with "cached".
func cutting(stem, label string, reset bool) reply {
	return func(w http.ResponseWriter, r *http.Request, try int) {
		if try == 1 {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err != nil {
				panic(err)
			}
			if reset {
				conn.(*net.TCPConn).SetLinger(0)
			}
			conn.Close()
			return
		}
		if !strings.Contains(r.Header.Get("Accept"), "application/json") {
			io.WriteString(w, stem+":"+label)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"r1","stem":"`+stem+`","label":"`+label+`","cached":true}`)
	}
}

// A request whose connection is cut before any answer, closed or reset,
// is sent once more, within the same pass, and its answer
// counted as retried and, when the JSON answer says so, as from the
// results table; without RetryCut it fails.
func TestRunRetriesCutConnectionsOnce(t *testing.T) {
	_, files := images(t, "a.jpg", "b.jpg", "c.jpg")
	answers := map[string]reply{
		"a.jpg": text("a:Paul"),
		"b.jpg": cutting("b", "Emily", false),
		"c.jpg": cutting("c", "Bob", true),
	}
	url, _, tries := answering(t, answers)
	expected := map[string]string{"a": "Paul", "b": "Emily", "c": "Bob"}
	rep, err := Run(context.Background(), Config{URL: url, Files: files, Expected: expected, RetryCut: true})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.Correct != 3 || rep.Retried != 2 || rep.RetriedCached != 2 || len(rep.Attempts) != 1 {
		t.Fatalf("report %+v, want 3 correct in one pass, 2 retried, both from the table", rep)
	}
	for _, o := range rep.Outcomes {
		if o.File != "a.jpg" && (!o.Retried || !o.Cached || o.Cut == nil || !cutBeforeAnswer(o.Cut) || o.Attempts != 1) {
			t.Errorf("%s: %+v, want retried once within its attempt, answered from the table", o.File, o)
		}
	}
	for name, n := range map[string]int{"a.jpg": 1, "b.jpg": 2, "c.jpg": 2} {
		if got := tries(name); got != n {
			t.Errorf("%s uploaded %d times, want %d", name, got, n)
		}
	}
	var out strings.Builder
	rep.Print(&out, expected)
	if want := "Sent again after a cut connection: 2 (2 answered from the results table)"; !strings.Contains(out.String(), want) {
		t.Errorf("summary lacks %q:\n%s", want, out.String())
	}

	url, _, _ = answering(t, answers)
	rep, err = Run(context.Background(), Config{URL: url, Files: files, Expected: expected})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Failed != 2 || rep.Retried != 0 {
		t.Fatalf("without RetryCut: report %+v, want the 2 cut requests failed", rep)
	}
	for _, o := range rep.Outcomes {
		if o.File != "a.jpg" && !cutBeforeAnswer(o.Err) {
			t.Errorf("%s failed with %v, which is not read as a cut connection", o.File, o.Err)
		}
	}
}

func TestCutBeforeAnswer(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{io.EOF, true},
		{&url.Error{Op: "Post", URL: "http://x/", Err: io.ErrUnexpectedEOF}, true},
		{&net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, true},
		{&net.OpError{Op: "write", Err: os.NewSyscallError("write", syscall.EPIPE)}, true},
		{errors.New("http: server closed idle connection"), true},
		{&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, false},
		{&url.Error{Op: "Post", URL: "http://x/", Err: context.DeadlineExceeded}, false},
		{context.Canceled, false},
	} {
		if got := cutBeforeAnswer(c.err); got != c.want {
			t.Errorf("cutBeforeAnswer(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
