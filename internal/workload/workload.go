// Package workload is the load generator: it uploads a folder of images
// to a web tier, many at once, sends a request whose connection was cut
// once more, retries the failures as the course's newest
// generator does, checks every answer against the expected labels and
// reports the course's totals, then latency percentiles and throughput. It
// reads the course's expected-label files (labels.go).
package workload

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Config describes a run.
type Config struct {
	URL         string
	Files       []string          // image paths to upload, one request each
	Expected    map[string]string // stem → label; nil leaves correctness unchecked
	Concurrency int               // requests in flight at once [100]
	Field       string            // multipart field [inputFile]
	Timeout     time.Duration     // per request [10m]
	// Retries is how many more passes re-send the requests that failed in
	// the pass before. Zero sends each file once: a test must see failures
	// a retry would hide.
	Retries int
	// Refused, if set, is how long a request refused at connect (nothing
	// listening: a server restarting) keeps trying before it fails, as a
	// patient client would. Nothing was sent, so trying again is safe.
	Refused time.Duration
	// RetryCut sends a request again, once, within its pass, when its
	// connection was cut before any answer (reset, or closed: a web tier
	// that died under it), as an HTTP client that retries does: after
	// cutRetryPause, on a new connection. The first may have been queued,
	// so the second asks for JSON, whose "cached" says whether the results
	// table answered it.
	RetryCut bool
	// Progress, if set, is called after each request of an attempt
	// (numbered from 1) with that attempt's count of requests.
	Progress func(attempt, done, total int)
	// Attempted, if set, is called after each pass.
	Attempted func(Attempt)
}

// Outcome is one file's fate: its last attempt.
type Outcome struct {
	File   string
	ID     string // the web tier's request id (X-Request-Id), if it sent one
	Stem   string // the CSV's key for the file: its name before the first dot
	Status int
	Answer string // the response body
	Label  string
	Err    error
	// Latency is the last attempt's, from sending to the whole answer.
	Latency time.Duration
	// Answered is when the last attempt's answer was read whole.
	Answered time.Time
	Attempts int
	Correct  bool
	// Misrouted answers carry another file's stem: the course's clients
	// judge only the label, so these still count as completed, but the
	// web tier answered the wrong connection.
	Misrouted bool
	// Retried is set when the last attempt's first send had its
	// connection cut before any answer and RetryCut sent it again; Err,
	// Status and Answer are then the second send's. Cut is that first
	// send's error.
	Retried bool
	Cut     error
	// Cached is set when the answer says the results table gave it, with
	// no worker; only answers in JSON (those of retries) say.
	Cached bool
}

// Attempt is one pass over the requests still failing.
type Attempt struct {
	Number, Tried, Succeeded int
}

// String is the course generator's line for the pass.
func (a Attempt) String() string {
	return fmt.Sprintf("[Workload-gen] Attempt-%d %d/%d requests successful.", a.Number, a.Succeeded, a.Tried)
}

// Report sums a run up; counts are final outcomes per file.
type Report struct {
	Requests, Completed, Failed int
	// Checked is false when no labels were given; Correct and Wrong are
	// then zero.
	Checked        bool
	Correct, Wrong int
	Misrouted      int
	// Retried counts requests sent again after their connection was cut
	// (Config.RetryCut), RetriedCached those of them answered from the
	// results table.
	Retried, RetriedCached int
	// Duration is the wall time of the whole run, retries included.
	Duration            time.Duration
	P50, P95, P99, Mean time.Duration
	Attempts            []Attempt
	Outcomes            []Outcome
}

// Throughput is completed requests per second.
func (r Report) Throughput() float64 {
	if r.Duration <= 0 {
		return 0
	}
	return float64(r.Completed) / r.Duration.Seconds()
}

// SteadyThroughput is completed requests per second between the first
// and the last tenth of the answers: the pace once the pipeline is full
// and before it empties, which Throughput mixes with the time it takes a
// first request to get through (longer where every call is a round trip).
func (r Report) SteadyThroughput() float64 {
	var done []time.Time
	for _, o := range r.Outcomes {
		if o.Err == nil {
			done = append(done, o.Answered)
		}
	}
	slices.SortFunc(done, time.Time.Compare)
	first, last := len(done)/10, len(done)-1-len(done)/10
	if last <= first {
		return r.Throughput()
	}
	return float64(last-first) / done[last].Sub(done[first]).Seconds()
}

// GraderLatency is the course grader's latency: the run's total time over
// the number of requests, not a per-request figure.
func (r Report) GraderLatency() time.Duration {
	if r.Requests == 0 {
		return 0
	}
	return r.Duration / time.Duration(r.Requests)
}

// OK is true when every request was answered, by the right connection, and
// correctly where labels were given.
func (r Report) OK() bool {
	return r.Requests > 0 && r.Failed == 0 && r.Wrong == 0 && r.Misrouted == 0
}

// ImagesIn lists the regular, non-hidden files of dir in name order.
func ImagesIn(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("listing images: %w", err)
	}
	var files []string
	for _, e := range entries {
		if e.Type().IsRegular() && !strings.HasPrefix(e.Name(), ".") {
			files = append(files, filepath.Join(dir, e.Name()))
		}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no files in %s", dir)
	}
	return files, nil
}

// Run sends every file, then re-sends the failures up to cfg.Retries more
// times, and waits for all answers.
func Run(ctx context.Context, cfg Config) (Report, error) {
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 100
	}
	if cfg.Field == "" {
		cfg.Field = "inputFile"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Minute
	}
	bodies := make([][]byte, len(cfg.Files))
	for i, f := range cfg.Files {
		data, err := os.ReadFile(f)
		if err != nil {
			return Report{}, fmt.Errorf("reading an image to upload: %w", err)
		}
		bodies[i] = data
	}
	client := &http.Client{
		Timeout: cfg.Timeout,
		Transport: &http.Transport{
			MaxIdleConns:        cfg.Concurrency,
			MaxIdleConnsPerHost: cfg.Concurrency,
			IdleConnTimeout:     90 * time.Second,
		},
	}
	defer client.CloseIdleConnections()
	// A retry dials afresh: the pool may still hold kept-alive
	// connections to the server that died, not yet seen to be reset.
	clients := clients{client, &http.Client{Timeout: cfg.Timeout, Transport: &http.Transport{DisableKeepAlives: true}}}

	outcomes := make([]Outcome, len(cfg.Files))
	pending := make([]int, len(cfg.Files))
	for i := range pending {
		pending[i] = i
	}
	var attempts []Attempt
	start := time.Now()
	for n := 1; n <= 1+cfg.Retries && len(pending) > 0 && ctx.Err() == nil; n++ {
		send(ctx, clients, cfg, n, pending, bodies, outcomes)
		var failed []int
		for _, i := range pending {
			if outcomes[i].Err != nil {
				failed = append(failed, i)
			}
		}
		a := Attempt{Number: n, Tried: len(pending), Succeeded: len(pending) - len(failed)}
		attempts = append(attempts, a)
		if cfg.Attempted != nil {
			cfg.Attempted(a)
		}
		pending = failed
	}
	rep := summarise(outcomes, time.Since(start), cfg.Expected != nil)
	rep.Attempts = attempts
	return rep, ctx.Err()
}

var errNotSent = errors.New("not sent: the run was stopped")

// send is one pass: the files at indices, cfg.Concurrency at a time.
// clients are the generator's: one for first sends, one for retries of
// cut connections.
type clients struct{ first, retry *http.Client }

func send(ctx context.Context, clients clients, cfg Config, attempt int, indices []int, bodies [][]byte, outcomes []Outcome) {
	for _, i := range indices {
		name := filepath.Base(cfg.Files[i])
		outcomes[i] = Outcome{File: name, Stem: courseStem(name), Err: errNotSent, Attempts: attempt - 1}
	}
	jobs := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	done := 0
	for range min(cfg.Concurrency, len(indices)) {
		wg.Go(func() {
			for i := range jobs {
				outcomes[i] = upload(ctx, clients, cfg, outcomes[i], bodies[i])
				if cfg.Progress != nil {
					mu.Lock()
					done++
					cfg.Progress(attempt, done, len(indices))
					mu.Unlock()
				}
			}
		})
	}
sending:
	for _, i := range indices {
		select {
		case jobs <- i:
		case <-ctx.Done():
			break sending
		}
	}
	close(jobs)
	wg.Wait()
}

func upload(ctx context.Context, clients clients, cfg Config, o Outcome, data []byte) Outcome {
	o.Attempts++
	o.Err, o.ID, o.Retried, o.Cut, o.Cached = nil, "", false, nil, false
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	part, err := mw.CreateFormFile(cfg.Field, o.File)
	if err == nil {
		_, err = part.Write(data)
	}
	if err == nil {
		err = mw.Close()
	}
	if err != nil {
		o.Err = fmt.Errorf("building the upload: %w", err)
		return o
	}
	once := func(client *http.Client, accept string) (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, cfg.URL, bytes.NewReader(body.Bytes()))
		if err != nil {
			return nil, fmt.Errorf("building the request: %w", err)
		}
		req.Header.Set("Content-Type", mw.FormDataContentType())
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		return client.Do(req)
	}
	post := func(client *http.Client, accept string) (*http.Response, error) {
		resp, err := once(client, accept)
		for start := time.Now(); err != nil && errors.Is(err, syscall.ECONNREFUSED) && time.Since(start) < cfg.Refused && ctx.Err() == nil; {
			time.Sleep(100 * time.Millisecond)
			resp, err = once(client, accept)
		}
		return resp, err
	}
	// The latency is the client's: a retried request's counts from its
	// first send.
	start := time.Now()
	resp, err := post(clients.first, "")
	if err != nil && cfg.RetryCut && cutBeforeAnswer(err) && ctx.Err() == nil {
		o.Retried, o.Cut = true, err
		// A dying server resets its connections one by one as its
		// sockets close, its listening one among them: a retry sent the
		// instant the first reset arrives can still be queued on that
		// listener, and be reset in turn.
		select {
		case <-time.After(cutRetryPause):
		case <-ctx.Done():
		}
		resp, err = post(clients.retry, "application/json")
	}
	if err != nil {
		o.Err, o.Latency = err, time.Since(start)
		return o
	}
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	o.Answered = time.Now()
	o.Latency, o.Status, o.Answer = o.Answered.Sub(start), resp.StatusCode, strings.TrimSpace(string(answer))
	o.ID = resp.Header.Get("X-Request-Id")
	if err != nil {
		o.Err = fmt.Errorf("reading the answer: %w", err)
		return o
	}
	if resp.StatusCode != http.StatusOK {
		o.Err = fmt.Errorf("%s: %s", resp.Status, o.Answer)
		return o
	}
	if isJSON(resp.Header.Get("Content-Type")) {
		var a struct {
			Stem, Label string
			Cached      bool
		}
		if err := json.Unmarshal(answer, &a); err != nil {
			o.Err = fmt.Errorf("reading the JSON answer %q: %w", o.Answer, err)
			return o
		}
		// Checked below as the course's text answer would be.
		o.Answer, o.Cached = a.Stem+":"+a.Label, a.Cached
	}
	label, ok := courseLabel(o.Answer)
	if !ok {
		o.Err = fmt.Errorf("answer %q has no colon before a label", o.Answer)
		return o
	}
	o.Label = label
	answered, _, _ := strings.Cut(o.Answer, ":")
	o.Misrouted = !namesFile(answered, o.File)
	if want, known := cfg.Expected[o.Stem]; known {
		o.Correct = label == want
	}
	return o
}

// cutRetryPause is how long a request whose connection was cut waits
// before it is sent again.
const cutRetryPause = 250 * time.Millisecond

// cutBeforeAnswer tells whether err, from sending a request, means the
// connection ended before any answer: reset, or closed, as when the
// server's process dies. A refused connect or a timeout is not a cut.
func cutBeforeAnswer(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		// net/http's error for a kept-alive connection the server closed
		// as the request went out; it exports no value to match.
		strings.Contains(err.Error(), "server closed idle connection")
}

func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && mt == "application/json"
}

// courseStem is the key the course's clients look a file up by in the
// CSV: the name before its first dot ("a.b.jpg" → "a").
func courseStem(name string) string {
	stem, _, _ := strings.Cut(name, ".")
	return stem
}

// courseLabel reads an answer as the course's clients do: the text between
// the first and the second colon, without surrounding space. An answer
// without a colon is an error there, so a failed request here.
func courseLabel(answer string) (string, bool) {
	parts := strings.Split(answer, ":")
	if len(parts) < 2 {
		return "", false
	}
	return strings.TrimSpace(parts[1]), true
}

// namesFile tells whether an answer's stem is file's name without one or
// more extensions, so either way of deriving a stem from a name with
// several dots is accepted.
func namesFile(stem, file string) bool {
	return stem == file || strings.HasPrefix(file, stem+".")
}

func summarise(outcomes []Outcome, d time.Duration, checked bool) Report {
	r := Report{Requests: len(outcomes), Duration: d, Checked: checked, Outcomes: outcomes}
	var lat []time.Duration
	var sum time.Duration
	for _, o := range outcomes {
		if o.Retried {
			r.Retried++
			if o.Err == nil && o.Cached {
				r.RetriedCached++
			}
		}
		if o.Err != nil {
			r.Failed++
			continue
		}
		r.Completed++
		lat = append(lat, o.Latency)
		sum += o.Latency
		if o.Misrouted {
			r.Misrouted++
		}
		switch {
		case !checked:
		case o.Correct:
			r.Correct++
		default:
			r.Wrong++
		}
	}
	if len(lat) > 0 {
		slices.Sort(lat)
		r.P50, r.P95, r.P99 = percentile(lat, 50), percentile(lat, 95), percentile(lat, 99)
		r.Mean = sum / time.Duration(len(lat))
	}
	return r
}

// percentile uses the nearest-rank method on sorted latencies.
func percentile(sorted []time.Duration, p int) time.Duration {
	rank := (p*len(sorted) + 99) / 100
	return sorted[max(rank-1, 0)]
}

const prefix = "[Workload-gen] "

// Print writes the course generator's statistics, line for line as its
// graders parse them (with "Total response time:", which the newest grader
// reads, beside the older "Total Test Duration:"), then Surge's own
// figures and up to ten failed, wrong or misrouted requests.
func (r Report) Print(w io.Writer, expected map[string]string) {
	correct, wrong := "not checked (no prediction file)", "not checked (no prediction file)"
	if r.Checked {
		correct, wrong = fmt.Sprint(r.Correct), fmt.Sprint(r.Wrong)
	}
	total := fmt.Sprintf("%.4f", r.Duration.Seconds())
	fmt.Fprintln(w, prefix+"----- Workload Generator Statistics -----")
	fmt.Fprintf(w, prefix+"Total number of requests: %d\n", r.Requests)
	fmt.Fprintf(w, prefix+"Total number of requests completed successfully: %d\n", r.Completed)
	fmt.Fprintf(w, prefix+"Total number of failed requests: %d\n", r.Failed)
	fmt.Fprintf(w, prefix+"Total number of correct predictions : %s\n", correct)
	fmt.Fprintf(w, prefix+"Total number of wrong predictions: %s\n", wrong)
	fmt.Fprintf(w, prefix+"Total response time: %s (seconds)\n", total)
	fmt.Fprintf(w, prefix+"Total Test Duration: %s (seconds)\n", total)
	fmt.Fprintln(w, prefix+"-----------------------------------")
	if r.Completed > 0 {
		fmt.Fprintf(w, "Latency of answered requests: p50 %s, p95 %s, p99 %s, mean %s\n", ms(r.P50), ms(r.P95), ms(r.P99), ms(r.Mean))
	} else {
		fmt.Fprintln(w, "Latency of answered requests: none was answered")
	}
	fmt.Fprintf(w, "Throughput: %.1f requests/s\n", r.Throughput())
	fmt.Fprintf(w, "Grader's latency (total time / requests): %.4f s\n", r.GraderLatency().Seconds())
	fmt.Fprintf(w, "Sent again after a cut connection: %d (%d answered from the results table)\n", r.Retried, r.RetriedCached)
	if r.Misrouted > 0 {
		fmt.Fprintf(w, "Answers naming another file: %d\n", r.Misrouted)
	}
	var bad []string
	for _, o := range r.Outcomes {
		switch {
		case o.Err != nil:
			bad = append(bad, fmt.Sprintf("  failed %s (attempts: %d): %v", o.File, o.Attempts, o.Err))
		case o.Misrouted:
			bad = append(bad, fmt.Sprintf("  misrouted %s: answered %q", o.File, o.Answer))
		case !r.Checked || o.Correct:
		default:
			want, known := expected[o.Stem]
			if !known {
				bad = append(bad, fmt.Sprintf("  wrong  %s: got %q, and the labels have no row %q", o.File, o.Label, o.Stem))
				continue
			}
			bad = append(bad, fmt.Sprintf("  wrong  %s: got %q, want %q", o.File, o.Label, want))
		}
	}
	sort.Strings(bad)
	for i, b := range bad {
		if i == 10 {
			fmt.Fprintf(w, "  ... and %d more\n", len(bad)-10)
			break
		}
		fmt.Fprintln(w, b)
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond)) }
