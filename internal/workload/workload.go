// Package workload is the load generator: it uploads a folder of images
// to a web tier, many at once, checks every answer against the expected
// labels and reports the course's totals with latency percentiles.
package workload

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/surgeml/surge/events"
)

// Config describes a run.
type Config struct {
	URL         string
	Files       []string          // image paths to upload, one request each
	Expected    map[string]string // stem → label; nil checks only that requests succeed
	Concurrency int               // requests in flight at once [100]
	Field       string            // multipart field [inputFile]
	Timeout     time.Duration     // per request [10m]
	// Progress, if set, is called after each request.
	Progress func(done, total int)
}

// Outcome is one request's fate.
type Outcome struct {
	File    string
	Stem    string
	Status  int
	Answer  string // the response body
	Label   string
	Err     error
	Latency time.Duration
	Correct bool
}

// Report sums a run up.
type Report struct {
	Requests, Completed, Failed, Correct, Wrong int
	Duration                                    time.Duration
	P50, P95, P99, Mean                         time.Duration
	Outcomes                                    []Outcome
}

// Throughput is completed requests per second.
func (r Report) Throughput() float64 {
	if r.Duration <= 0 {
		return 0
	}
	return float64(r.Completed) / r.Duration.Seconds()
}

// OK is true when every request was answered correctly.
func (r Report) OK() bool { return r.Failed == 0 && r.Wrong == 0 && r.Requests > 0 }

// ImagesIn lists the regular files of dir, sorted.
func ImagesIn(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
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

// Run sends every file once and waits for all answers.
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
			return Report{}, err
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

	outcomes := make([]Outcome, len(cfg.Files))
	jobs := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	done := 0
	start := time.Now()
	for range min(cfg.Concurrency, len(cfg.Files)) {
		wg.Go(func() {
			for i := range jobs {
				outcomes[i] = upload(ctx, client, cfg, cfg.Files[i], bodies[i])
				if cfg.Progress != nil {
					mu.Lock()
					done++
					cfg.Progress(done, len(cfg.Files))
					mu.Unlock()
				}
			}
		})
	}
	for i := range cfg.Files {
		select {
		case jobs <- i:
		case <-ctx.Done():
		}
	}
	close(jobs)
	wg.Wait()
	return summarise(outcomes, time.Since(start)), ctx.Err()
}

func upload(ctx context.Context, client *http.Client, cfg Config, path string, data []byte) Outcome {
	name := filepath.Base(path)
	o := Outcome{File: name, Stem: events.Stem(name)}
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	part, err := mw.CreateFormFile(cfg.Field, name)
	if err == nil {
		_, err = part.Write(data)
	}
	if err == nil {
		err = mw.Close()
	}
	if err != nil {
		o.Err = err
		return o
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, cfg.URL, &body)
	if err != nil {
		o.Err = err
		return o
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		o.Err, o.Latency = err, time.Since(start)
		return o
	}
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	o.Latency, o.Status, o.Answer = time.Since(start), resp.StatusCode, strings.TrimSpace(string(answer))
	if err != nil {
		o.Err = err
		return o
	}
	if resp.StatusCode != http.StatusOK {
		o.Err = fmt.Errorf("%s: %s", resp.Status, o.Answer)
		return o
	}
	// Clients split on the first colon: the stem, then the label.
	stem, label, ok := strings.Cut(o.Answer, ":")
	if !ok || stem != o.Stem {
		o.Err = fmt.Errorf("answer %q is not %q followed by a label", o.Answer, o.Stem+":")
		return o
	}
	o.Label = label
	if cfg.Expected == nil {
		o.Correct = true
	} else {
		want, known := cfg.Expected[o.Stem]
		o.Correct = known && label == want
	}
	return o
}

func summarise(outcomes []Outcome, d time.Duration) Report {
	r := Report{Requests: len(outcomes), Duration: d, Outcomes: outcomes}
	var lat []time.Duration
	var sum time.Duration
	for _, o := range outcomes {
		if o.Err != nil {
			r.Failed++
			continue
		}
		r.Completed++
		lat = append(lat, o.Latency)
		sum += o.Latency
		if o.Correct {
			r.Correct++
		} else {
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

// Print writes the course's totals, then latency and throughput, then up
// to ten failures and wrong answers.
func (r Report) Print(w io.Writer, expected map[string]string) {
	fmt.Fprintf(w, "Total number of requests: %d\n", r.Requests)
	fmt.Fprintf(w, "Total number of requests completed successfully: %d\n", r.Completed)
	fmt.Fprintf(w, "Total number of failed requests: %d\n", r.Failed)
	fmt.Fprintf(w, "Total number of correct predictions: %d\n", r.Correct)
	fmt.Fprintf(w, "Total number of wrong predictions: %d\n", r.Wrong)
	fmt.Fprintf(w, "Total Test Duration: %.3f (seconds)\n", r.Duration.Seconds())
	fmt.Fprintf(w, "Latency: mean %s, p50 %s, p95 %s, p99 %s\n", ms(r.Mean), ms(r.P50), ms(r.P95), ms(r.P99))
	fmt.Fprintf(w, "Throughput: %.1f requests/s\n", r.Throughput())
	var bad []string
	for _, o := range r.Outcomes {
		switch {
		case o.Err != nil:
			bad = append(bad, fmt.Sprintf("  failed %s: %v", o.File, o.Err))
		case !o.Correct:
			bad = append(bad, fmt.Sprintf("  wrong  %s: got %q, want %q", o.File, o.Label, expected[o.Stem]))
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
