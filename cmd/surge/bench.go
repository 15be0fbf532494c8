package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/surgeml/surge/events"
	"github.com/surgeml/surge/internal/backend"
	"github.com/surgeml/surge/internal/config"
	"github.com/surgeml/surge/internal/frontend"
	"github.com/surgeml/surge/internal/localrun"
	"github.com/surgeml/surge/internal/recognize"
	"github.com/surgeml/surge/internal/vision"
	"github.com/surgeml/surge/internal/workload"
)

// benchCmd measures, in one run, what the pipeline costs over classifying
// directly: throughput at 100 concurrent requests (from a cold, empty
// fleet and again with the fleet up), added latency one request at a time,
// and the peak memory of the web tier and the workers; with -web 1,2, for
// each number of web tiers, side by side.
func benchCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench", flag.ExitOnError)
	mcfg := recognize.Flags(fs)
	images := fs.String("images", "", "folder of images to send (e.g. ../shared/datasets/faces/face_images_1000)")
	requests := fs.Int("requests", 1000, "requests per throughput run")
	concurrency := fs.Int("concurrency", 100, "requests in flight in the throughput runs")
	sequential := fs.Int("sequential", 200, "requests sent one at a time for the latency run")
	maxWorkers := fs.Int("max-workers", events.DefaultMaxWorkers, "fleet cap")
	webs := fs.String("web", "1", "comma-separated numbers of web tiers sharing the port (SO_REUSEPORT) to measure the pipeline with, one system each, e.g. 1,2")
	bin := fs.String("bin", "", "directory of the webtier and worker binaries (default: beside this one)")
	if err := config.Parse(fs, args, os.Getenv); err != nil {
		return err
	}
	if *images == "" {
		return errors.New("-images is required")
	}
	tiers, err := webCounts(*webs)
	if err != nil {
		return err
	}
	log := config.Logger()
	files, err := workload.ImagesIn(*images)
	if err != nil {
		return err
	}
	batch := make([]string, *requests)
	for i := range batch {
		batch[i] = files[i%len(files)]
	}
	if *bin == "" {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		*bin = dirOf(exe)
	}

	fmt.Fprintf(os.Stderr, "bench: direct classification of %d images on %d goroutines, %d intra-op thread each\n", len(batch), runtime.GOMAXPROCS(0), mcfg.Threads)
	direct, err := directThroughput(ctx, *mcfg, batch, runtime.GOMAXPROCS(0))
	if err != nil {
		return err
	}
	directLatency, err := directMedian(ctx, *mcfg, batch[:min(*sequential, len(batch))])
	if err != nil {
		return err
	}

	wargs, _, err := workerArgs(ctx, *mcfg, 1)
	if err != nil {
		return err
	}
	runs := make([]pipelineFigures, len(tiers))
	for i, n := range tiers {
		if runs[i], err = benchPipeline(ctx, localrun.Config{
			Bin: *bin, Web: n, Host: "127.0.0.1", MaxWorkers: *maxWorkers, Tick: time.Second,
			// Long enough that the warm run finds the cold run's fleet still up.
			ScaleInDelay: 5 * time.Second,
			WorkerArgs:   wargs,
			// The warm run repeats the cold run's names and bytes: it measures
			// the pipeline, so the web tier must not answer from the table.
			WebArgs: []string{"-reuse-answers=false"},
		}, batch, *concurrency, *sequential, log); err != nil {
			return err
		}
	}

	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	values := func(format func(pipelineFigures) string) string {
		cells := make([]string, len(runs))
		for i, r := range runs {
			cells[i] = format(r)
		}
		return strings.Join(cells, "\t")
	}
	header := "value"
	if len(tiers) > 1 || tiers[0] > 1 {
		header = values(func(r pipelineFigures) string { return fmt.Sprintf("%d web %s", r.web, plural(r.web, "tier", "tiers")) })
	}
	fmt.Fprintf(w, "measure\t%s\ttarget\n", header)
	// Measured once, without the pipeline: its value goes in the first
	// column only.
	fmt.Fprintf(w, "direct classification (%d sessions × %d thread)\t%.1f images/s%s\t\n", runtime.GOMAXPROCS(0), mcfg.Threads,
		direct, strings.Repeat("\t", len(runs)-1))
	fmt.Fprintf(w, "pipeline, fleet from 0 (%d req, %d at once)\t%s\t≥ 0.80\n", len(batch), *concurrency,
		values(func(r pipelineFigures) string {
			return fmt.Sprintf("%.1f req/s = %.2f of direct", r.cold.Throughput(), r.cold.Throughput()/direct)
		}))
	fmt.Fprintf(w, "pipeline, fleet up\t%s\t≥ 0.80\n",
		values(func(r pipelineFigures) string {
			return fmt.Sprintf("%.1f req/s = %.2f of direct", r.warm.Throughput(), r.warm.Throughput()/direct)
		}))
	fmt.Fprintf(w, "latency at %d concurrent, fleet from 0: p50 / p95 / p99\t%s\t\n", *concurrency,
		values(func(r pipelineFigures) string {
			return fmt.Sprintf("%s / %s / %s", ms(r.cold.P50), ms(r.cold.P95), ms(r.cold.P99))
		}))
	fmt.Fprintf(w, "latency at %d concurrent, fleet up: p50 / p95 / p99\t%s\t\n", *concurrency,
		values(func(r pipelineFigures) string {
			return fmt.Sprintf("%s / %s / %s", ms(r.warm.P50), ms(r.warm.P95), ms(r.warm.P99))
		}))
	fmt.Fprintf(w, "median latency at concurrency 1: pipeline / direct\t%s\t\n",
		values(func(r pipelineFigures) string { return fmt.Sprintf("%s / %s", ms(r.one.P50), ms(directLatency)) }))
	fmt.Fprintf(w, "median added latency at concurrency 1\t%s\t≤ 10ms\n",
		values(func(r pipelineFigures) string { return ms(r.one.P50 - directLatency) }))
	fmt.Fprintf(w, "peak workers (max %d)\t%s\t≤ %d\n", *maxWorkers,
		values(func(r pipelineFigures) string { return strconv.Itoa(r.peakFleet) }), *maxWorkers)
	fmt.Fprintf(w, "peak RSS, web tier (largest)\t%s\t≤ 150 MB\n",
		values(func(r pipelineFigures) string { return fmt.Sprintf("%.1f MB", mb(r.report.WebPeakRSS)) }))
	fmt.Fprintf(w, "peak RSS, worker (largest of those run)\t%s\t≤ 200 MB\n",
		values(func(r pipelineFigures) string {
			var peak int64
			for _, e := range r.report.Workers {
				peak = max(peak, e.PeakRSS)
			}
			return fmt.Sprintf("%.1f MB of %d", mb(peak), len(r.report.Workers))
		}))
	return w.Flush()
}

// webCounts reads -web: numbers of web tiers, each at least 1.
func webCounts(s string) ([]int, error) {
	var counts []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("-web %q: want numbers of web tiers, each at least 1, separated by commas", s)
		}
		counts = append(counts, n)
	}
	return counts, nil
}

// pipelineFigures are what one system measured.
type pipelineFigures struct {
	web             int
	cold, warm, one workload.Report
	peakFleet       int
	report          localrun.Report
}

// benchPipeline starts the system cfg describes on a data directory of
// its own and measures it: the cold and warm runs of batch at
// concurrency, then sequential requests one at a time.
func benchPipeline(ctx context.Context, cfg localrun.Config, batch []string, concurrency, sequential int, log *slog.Logger) (pipelineFigures, error) {
	f := pipelineFigures{web: cfg.Web}
	data, err := os.MkdirTemp("", "surge-bench-")
	if err != nil {
		return f, err
	}
	defer os.RemoveAll(data)
	cfg.Backend = backend.Config{Kind: "local", Prefix: "bench", DataDir: data, Visibility: events.RequestVisibility, MaxReceives: events.MaxReceives}
	sys, err := localrun.Start(ctx, cfg, log)
	if err != nil {
		return f, err
	}
	stopped := false
	defer func() {
		if !stopped {
			sys.Stop(context.Background())
		}
	}()
	watch := watchFleet(ctx, sys.URL)

	tiers := fmt.Sprintf("%d web %s", cfg.Web, plural(cfg.Web, "tier", "tiers"))
	run := func(what string, files []string, concurrency int) (workload.Report, error) {
		return runLoad(ctx, sys.URL, what+", "+tiers, files, concurrency)
	}
	if f.cold, err = run("pipeline from an empty fleet", batch, concurrency); err != nil {
		return f, err
	}
	if f.warm, err = run("pipeline with the fleet up", batch, concurrency); err != nil {
		return f, err
	}
	// Let the fleet settle to the one worker a lone request calls for.
	waitFleet(ctx, sys.URL, 1, 30*time.Second)
	if f.one, err = run("one request at a time", batch[:min(sequential, len(batch))], 1); err != nil {
		return f, err
	}
	f.peakFleet = watch()
	f.report, err = sys.Stop(context.Background())
	stopped = true
	return f, err
}

// runLoad sends files to the web tier at url, concurrency at a time, and
// fails if any request did.
func runLoad(ctx context.Context, url, what string, files []string, concurrency int) (workload.Report, error) {
	fmt.Fprintf(os.Stderr, "bench: %s: %d requests, %d at a time\n", what, len(files), concurrency)
	cfg := workload.Config{URL: url + "/", Files: files, Concurrency: concurrency}
	if bar := progress(what); bar != nil {
		cfg.Progress = func(_, done, total int) { bar(done, total) }
	}
	rep, err := workload.Run(ctx, cfg)
	if err == nil && !rep.OK() {
		err = fmt.Errorf("%s: %d of %d requests failed", what, rep.Failed, rep.Requests)
	}
	return rep, err
}

func dirOf(path string) string {
	for i := len(path) - 1; i >= 0; i-- {
		if path[i] == '/' {
			return path[:i]
		}
	}
	return "."
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond)) }
func mb(b int64) float64        { return float64(b) / (1 << 20) }

// directThroughput classifies files on n goroutines, one session each, as
// n single-threaded workers would, and returns images per second.
func directThroughput(ctx context.Context, cfg recognize.Config, files []string, n int) (float64, error) {
	data, err := readAll(files)
	if err != nil {
		return 0, err
	}
	classifiers := make([]*recognize.Classifier, n)
	for i := range classifiers {
		c, _, err := recognize.Load(ctx, cfg, config.Logger())
		if err != nil {
			return 0, err
		}
		defer c.Close()
		classifiers[i] = c
	}
	next := make(chan []byte)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	start := time.Now()
	for _, c := range classifiers {
		wg.Go(func() {
			for d := range next {
				if err := classifyBytes(c, d); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	for _, d := range data {
		next <- d
	}
	close(next)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return 0, err
	}
	return float64(len(data)) / time.Since(start).Seconds(), nil
}

// directMedian is the median time to classify one file, one at a time.
func directMedian(ctx context.Context, cfg recognize.Config, files []string) (time.Duration, error) {
	data, err := readAll(files)
	if err != nil {
		return 0, err
	}
	c, _, err := recognize.Load(ctx, cfg, config.Logger())
	if err != nil {
		return 0, err
	}
	defer c.Close()
	times := make([]time.Duration, len(data))
	for i, d := range data {
		start := time.Now()
		if err := classifyBytes(c, d); err != nil {
			return 0, err
		}
		times[i] = time.Since(start)
	}
	slices.Sort(times)
	return times[len(times)/2], nil
}

func classifyBytes(c *recognize.Classifier, data []byte) error {
	img, err := vision.Decode(data, vision.DefaultMaxPixels)
	if err != nil {
		return err
	}
	_, _, err = c.Recognize(img)
	return err
}

func readAll(files []string) ([][]byte, error) {
	out := make([][]byte, len(files))
	for i, f := range files {
		d, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		out[i] = d
	}
	return out, nil
}

func fleetStatus(ctx context.Context, url string) (frontend.Status, error) {
	var st frontend.Status
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/status", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(body, &st)
}

// watchFleet polls /status until the returned function is called, which
// reports the largest fleet seen.
func watchFleet(ctx context.Context, url string) func() int {
	watch := watchStatus(ctx, url)
	return func() int { return watch().fleet }
}

// statusPeaks are the largest figures /status showed.
type statusPeaks struct {
	fleet   int // live workers
	backlog int // results waiting in the response queue for the web tier
}

// watchStatus polls /status until the returned function is called, which
// reports the peaks seen.
func watchStatus(ctx context.Context, url string) func() statusPeaks {
	ctx, cancel := context.WithCancel(ctx)
	var peak statusPeaks
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			if st, err := fleetStatus(ctx, url); err == nil {
				peak.fleet = max(peak.fleet, st.Fleet.Running)
				peak.backlog = max(peak.backlog, st.ResponseQueue.Visible)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	return func() statusPeaks { cancel(); <-done; return peak }
}

func waitFleet(ctx context.Context, url string, want int, limit time.Duration) {
	for deadline := time.Now().Add(limit); time.Now().Before(deadline) && ctx.Err() == nil; time.Sleep(200 * time.Millisecond) {
		if st, err := fleetStatus(ctx, url); err == nil && st.Fleet.Running <= want {
			return
		}
	}
}
