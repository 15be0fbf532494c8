package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/surgeml/surge/events"
	"github.com/surgeml/surge/internal/backend"
	"github.com/surgeml/surge/internal/config"
	"github.com/surgeml/surge/internal/frontend"
	"github.com/surgeml/surge/internal/localrun"
	"github.com/surgeml/surge/internal/recognize"
	"github.com/surgeml/surge/internal/workload"
)

// awsLaunchDelay is RunInstances to the worker's process starting on EC2:
// ~15 s from the API call through pending to running, ~15 s of OS boot,
// ~10 s of user data (downloading the binary, the runtime and the model);
// the worker's own start comes after it. docs/benchmark.md cites the
// measurements.
const awsLaunchDelay = 40 * time.Second

// awsStartDelay is StartInstances of a stopped pool member to its worker's
// process starting: pending to running as for a launch, then a boot that
// skips cloud-init's first-boot work and the user data's downloads. An
// estimate from the launch's parts, not a measurement (docs/benchmark.md).
const awsStartDelay = 20 * time.Second

// benchCloudCmd runs the local system with AWS's timings: every queue,
// bucket and table call pays an in-region round trip, and every worker an
// instance's boot, so the figures say what a user on AWS would wait for,
// without moto's throughput in the data path.
func benchCloudCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench-cloud", flag.ExitOnError)
	mcfg := recognize.Flags(fs)
	images := fs.String("images", "", "folder of images to send (e.g. ../shared/datasets/faces/face_images_1000)")
	coldRequests := fs.Int("cold-requests", 100, "requests of the cold and warm runs, all sent at once (the course's run)")
	requests := fs.Int("requests", 1000, "requests of the long run")
	concurrency := fs.Int("concurrency", 100, "requests in flight in the long run")
	maxWorkers := fs.Int("max-workers", events.DefaultMaxWorkers, "fleet cap")
	latency := backend.AWSLatency()
	fs.Var(&latency, "latency", `round trip added to each call: "sqs=20ms,s3=25ms,dynamodb=8ms,jitter=0.25", or "aws" (these)`)
	launchDelay := fs.Duration("launch-delay", awsLaunchDelay, "an instance's boot before its worker starts (pending, OS boot, user data)")
	startDelay := fs.Duration("start-delay", awsStartDelay, "a stopped pool member's start before its worker starts (pending, OS boot; no user data)")
	poolSize := fs.Int("pool-size", 0, "warm pool of the pool run (default: the fleet cap)")
	timeScale := fs.Float64("time-scale", 1, "multiplies the launch and start delays (not the per-call latency), to get the table sooner")
	ratioWorkers := fs.Int("ratio-workers", runtime.GOMAXPROCS(0), "fleet of the with/without latency runs: one worker per core, as one instance each has its own")
	ratioRequests := fs.Int("ratio-requests", 1000, "requests of each with/without latency run")
	workerConcurrency := fs.Int("worker-concurrency", 0, "requests each worker holds at once; 0: the worker's default")
	inferenceNice := fs.Int("inference-nice", 10, "niceness of the workers' inference, so the web tier sharing their cores takes results as it would on its own instance (0: unchanged)")
	bin := fs.String("bin", "", "directory of the webtier and worker binaries (default: beside this one)")
	if err := config.Parse(fs, args, os.Getenv); err != nil {
		return err
	}
	if *images == "" {
		return errors.New("-images is required")
	}
	if *timeScale <= 0 {
		return fmt.Errorf("-time-scale %v: want a positive factor", *timeScale)
	}
	files, err := workload.ImagesIn(*images)
	if err != nil {
		return err
	}
	batch := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = files[i%len(files)]
		}
		return out
	}
	if *bin == "" {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		*bin = dirOf(exe)
	}
	wargs, _, err := workerArgs(ctx, *mcfg, *workerConcurrency)
	if err != nil {
		return err
	}
	boot := time.Duration(float64(*launchDelay) * *timeScale)
	start := time.Duration(float64(*startDelay) * *timeScale)
	if *poolSize <= 0 {
		*poolSize = *maxWorkers
	}
	// On AWS the web tier has an instance to itself; here it shares two
	// cores with a fleet of workers, whose inferences would keep it
	// waiting to take results off the response queue. Inference yielding
	// to everything else comes closer to separate machines, at the cost
	// of some of the fleet's throughput on this one.
	wargs = append(wargs, "-inference-nice", strconv.Itoa(*inferenceNice))
	b := cloudBench{bin: *bin, workerArgs: wargs}

	// The same cold run with the fleet started from a full warm pool.
	pooled, err := b.start(ctx, latency, boot, *maxWorkers, *poolSize, start)
	if err != nil {
		return err
	}
	fromPool, err := pooled.measure(ctx, "cloud timings, 100 requests from a warm pool", batch(*coldRequests), *coldRequests)
	if err = errors.Join(err, pooled.stop()); err != nil {
		return err
	}

	cloud, err := b.start(ctx, latency, boot, *maxWorkers, 0, 0)
	if err != nil {
		return err
	}
	cold, err := cloud.measure(ctx, "cloud timings, 100 requests from an empty fleet", batch(*coldRequests), *coldRequests)
	if err == nil {
		// The warm run is the same run on a fleet already booted.
		cloud.waitBooted(ctx, 2*boot+time.Minute)
	}
	var warm, long measured
	if err == nil {
		warm, err = cloud.measure(ctx, "cloud timings, 100 requests, fleet up", batch(*coldRequests), *coldRequests)
	}
	if err == nil {
		long, err = cloud.measure(ctx, "cloud timings, long run, fleet up", batch(*requests), *concurrency)
	}
	if err = errors.Join(err, cloud.stop()); err != nil {
		return err
	}

	steady := func(l backend.Latency, what string) (measured, error) {
		sys, err := b.start(ctx, l, 0, *ratioWorkers, 0, 0)
		if err != nil {
			return measured{}, err
		}
		// Bring the fleet up first: the ratio is of steady states.
		_, err = sys.measure(ctx, what+", warming up", batch(*ratioRequests), *concurrency)
		if err == nil {
			sys.waitBooted(ctx, time.Minute)
		}
		var m measured
		if err == nil {
			m, err = sys.measure(ctx, what, batch(*ratioRequests), *concurrency)
		}
		return m, errors.Join(err, sys.stop())
	}
	slow, err := steady(latency, fmt.Sprintf("%d workers with cloud latency", *ratioWorkers))
	if err != nil {
		return err
	}
	fast, err := steady(backend.Latency{}, fmt.Sprintf("%d workers without injected latency", *ratioWorkers))
	if err != nil {
		return err
	}

	fmt.Printf("cloud bench: per-call latency %v; launch delay %v, pool start %v", latency, *launchDelay, *startDelay)
	if *timeScale != 1 {
		fmt.Printf(" run at ×%g time scale, i.e. %v: cold-run times are as measured, with the shortened boot", *timeScale, boot)
	}
	fmt.Printf("; the real model on %d cores\n\n", runtime.GOMAXPROCS(0))
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "measure\tvalue\ttarget\n")
	for _, r := range []struct {
		what string
		m    measured
	}{{"from an empty fleet", cold}, {fmt.Sprintf("from a warm pool of %d", *poolSize), fromPool}, {"fleet up", warm}} {
		fmt.Fprintf(w, "%d requests at once, %s: first answer / average / p95\t%s / %s / %s\t\n", r.m.Requests, r.what, secs(r.m.first), secs(r.m.Mean), secs(r.m.P95))
		fmt.Fprintf(w, "%d requests at once, %s: makespan / peak fleet\t%s / %d\t\n", r.m.Requests, r.what, secs(r.m.Duration), r.m.peakFleet)
	}
	fmt.Fprintf(w, "warm pool ÷ launch only: first answer / average\t%.2f / %.2f\t≤ 0.60 / ≤ 0.70\n", fromPool.first.Seconds()/cold.first.Seconds(), fromPool.Mean.Seconds()/cold.Mean.Seconds())
	fmt.Fprintf(w, "%d requests, %d at once, fleet up: throughput / p95 / peak fleet\t%.1f req/s / %s / %d\t\n", long.Requests, *concurrency, long.Throughput(), secs(long.P95), long.peakFleet)
	fmt.Fprintf(w, "per-worker throughput (%d-request run ÷ peak fleet)\t%.2f req/s\t\n", long.Requests, long.Throughput()/float64(max(long.peakFleet, 1)))
	fmt.Fprintf(w, "results delivered by the web tier / peak visible in the response queue\t%.1f req/s / %d\t\n", long.Throughput(), long.peakBacklog)
	d := long.delivery
	fmt.Fprintf(w, "wait in the response queue, last %d results: p50 / p99 / max\t%.0f / %.0f / %.0f ms\tno backlog: p99 ≤ %v\n", d.Results, d.P50Ms, d.P99Ms, d.MaxMs, backlogWait(latency))
	fmt.Fprintf(w, "%d workers, steady state: with cloud latency / without\t%.1f / %.1f req/s\t\n", *ratioWorkers, slow.SteadyThroughput(), fast.SteadyThroughput())
	fmt.Fprintf(w, "%d workers: wait in the response queue, p50 / p99 / max: with cloud latency; without\t%.0f / %.0f / %.0f ms; %.0f / %.0f / %.0f ms\t\n", *ratioWorkers,
		slow.delivery.P50Ms, slow.delivery.P99Ms, slow.delivery.MaxMs, fast.delivery.P50Ms, fast.delivery.P99Ms, fast.delivery.MaxMs)
	fmt.Fprintf(w, "throughput with cloud latency ÷ without\t%.2f\t≥ 0.80\n", slow.SteadyThroughput()/fast.SteadyThroughput())
	return w.Flush()
}

// cloudBench starts local systems for the cloud bench.
type cloudBench struct {
	bin        string
	workerArgs []string
}

type benchSystem struct {
	sys  *localrun.System
	data string
}

func (b cloudBench) start(ctx context.Context, l backend.Latency, boot time.Duration, maxWorkers, pool int, start time.Duration) (*benchSystem, error) {
	data, err := os.MkdirTemp("", "surge-bench-cloud-")
	if err != nil {
		return nil, err
	}
	sys, err := localrun.Start(ctx, localrun.Config{
		Bin: b.bin,
		Backend: backend.Config{Kind: "local", Prefix: "cloudbench", DataDir: data,
			Visibility: events.RequestVisibility, MaxReceives: events.MaxReceives, Latency: l},
		Host: "127.0.0.1", MaxWorkers: maxWorkers, Tick: time.Second,
		// The fleet stays at its peak for the whole bench: the warm runs
		// measure a fleet that is up, not one being drained.
		ScaleInDelay: time.Hour,
		LaunchDelay:  boot,
		PoolSize:     pool,
		StartDelay:   start,
		WorkerArgs:   b.workerArgs,
		// Runs repeat names and bytes: the web tier must not answer them
		// from the results table.
		WebArgs: []string{"-reuse-answers=false"},
	}, config.Logger())
	if err != nil {
		os.RemoveAll(data)
		return nil, err
	}
	return &benchSystem{sys: sys, data: data}, nil
}

func (s *benchSystem) stop() error {
	_, err := s.sys.Stop(context.Background())
	return errors.Join(err, os.RemoveAll(s.data))
}

// measured is a run's report with what the web tier's status showed
// meanwhile.
type measured struct {
	workload.Report
	first       time.Duration // the quickest answer: all were sent at once
	peakFleet   int           // instances, booting ones included
	peakBacklog int           // results waiting in the response queue
	// delivery is how long the last results waited in the response queue.
	delivery frontend.DeliveryStatus
}

func (s *benchSystem) measure(ctx context.Context, what string, files []string, concurrency int) (measured, error) {
	watch := watchStatus(ctx, s.sys.URL)
	rep, err := runLoad(ctx, s.sys.URL, what, files, concurrency)
	peak := watch()
	m := measured{Report: rep, peakFleet: peak.fleet, peakBacklog: peak.backlog}
	if st, serr := fleetStatus(ctx, s.sys.URL); serr == nil {
		m.delivery = st.Delivery
	}
	for _, o := range rep.Outcomes {
		if o.Err == nil && (m.first == 0 || o.Latency < m.first) {
			m.first = o.Latency
		}
	}
	return m, err
}

// waitBooted waits, up to limit, until no instance is still booting or
// loading its model.
func (s *benchSystem) waitBooted(ctx context.Context, limit time.Duration) {
	for deadline := time.Now().Add(limit); time.Now().Before(deadline) && ctx.Err() == nil; time.Sleep(200 * time.Millisecond) {
		st, err := fleetStatus(ctx, s.sys.URL)
		if err != nil {
			continue
		}
		booted := true
		for _, in := range st.Fleet.Instances {
			booted = booted && in.State != events.Pending
		}
		if booted {
			return
		}
	}
}

// backlogWait is the longest the 99th percentile of results should wait
// in the response queue when the web tier keeps up. The floor is one SQS
// round trip (the send's way in, the receive's way back); a web tier
// sharing two cores with a fleet of workers adds scheduling delays of its
// own; a backlog, results arriving faster than they are taken, adds a
// wait that grows through the run to seconds (issue 12's first figures:
// 95 waiting at 40 a second). Five round trips tell the two apart.
func backlogWait(l backend.Latency) time.Duration {
	return max(5*l.SQS, 10*time.Millisecond)
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2fs", d.Seconds()) }
