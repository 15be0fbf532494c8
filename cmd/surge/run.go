package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/surgeml/surge/events"
	"github.com/surgeml/surge/internal/backend"
	"github.com/surgeml/surge/internal/config"
	"github.com/surgeml/surge/internal/frontend"
	"github.com/surgeml/surge/internal/localrun"
	"github.com/surgeml/surge/internal/metrics"
	"github.com/surgeml/surge/internal/recognize"
	"github.com/surgeml/surge/internal/scaler"
)

func runCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	var cfg localrun.Config
	backendCfg := backend.Flags(fs)
	mcfg := recognize.Flags(fs)
	fs.StringVar(&cfg.Host, "host", "", "web tier listen host, empty for all interfaces")
	fs.IntVar(&cfg.Port, "port", events.WebPort, "web tier port")
	fs.IntVar(&cfg.Web, "web", 1, "web tiers sharing the port through the kernel's SO_REUSEPORT; more than one run each under an instance id of its own, and one that dies is replaced")
	fs.IntVar(&cfg.MaxWorkers, "max-workers", events.DefaultMaxWorkers, "most worker processes at once")
	fs.IntVar(&cfg.MinWorkers, "min-workers", 0, "worker processes kept running with no backlog")
	fs.DurationVar(&cfg.Tick, "tick", time.Second, "scaler period")
	fs.DurationVar(&cfg.ScaleInDelay, "scale-in-delay", time.Second, "how long the backlog must call for fewer workers before any are drained")
	fs.DurationVar(&cfg.ReplyQueueGrace, "reply-queue-grace", scaler.DefaultReplyQueueGrace,
		"how long the reply queue of a web tier that is gone must stay empty, its results moved to the shared response queue, before it is deleted")
	fs.DurationVar(&cfg.DrainTimeout, "drain-timeout", frontend.DefaultDrainTimeout,
		"on Ctrl-C, how long the open uploads get to be answered, with the fleet still working, before those left are answered 503 with their ids")
	concurrency := fs.Int("concurrency", 0, "requests each worker holds at once; 0: the worker's default, twice its inferences")
	metricsAddr := fs.String("metrics-addr", "", "serve the scaler's decisions as Prometheus metrics on GET /metrics at this address, e.g. 127.0.0.1:9100 (empty: off; the web tier serves its own on its port, each worker on a port its /status entry names)")
	bin := fs.String("bin", "", "directory of the webtier and worker binaries (default: beside this one)")
	if err := config.Parse(fs, args, os.Getenv); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if cfg.Web < 1 {
		return fmt.Errorf("-web %d: at least one web tier", cfg.Web)
	}
	cfg.Backend = *backendCfg
	// Before the model is loaded, so that a second run fails at once.
	lock, err := localrun.LockData(cfg.Backend.DataDir)
	if err != nil {
		return err
	}
	cfg.Lock = lock
	line, logs := newLiveStatus(os.Stdout, os.Stderr)
	log := config.JSONLogger(logs)
	if *bin == "" {
		exe, err := os.Executable()
		if err != nil {
			lock.Release()
			return err
		}
		*bin = filepath.Dir(exe)
	}
	args, model, err := workerArgs(ctx, *mcfg, *concurrency)
	if err != nil {
		lock.Release()
		return err
	}
	cfg.WorkerArgs, cfg.Bin = args, *bin
	cfg.WebArgs = append(cfg.WebArgs, "-model-name", model)
	if *metricsAddr != "" {
		reg := metrics.NewRegistry()
		cfg.Metrics = metrics.NewScaler(reg)
		ln, err := metrics.Listen(*metricsAddr)
		if err != nil {
			lock.Release()
			return err
		}
		// Served until the run has stopped, so the drain's last
		// decisions can still be scraped.
		serveCtx, stopServing := context.WithCancel(context.WithoutCancel(ctx))
		defer stopServing()
		go func() {
			if err := metrics.Serve(serveCtx, ln, reg, log); err != nil {
				log.Error("scaler metrics server stopped", "err", err)
			}
		}()
		log.Info("serving the scaler's metrics", "addr", "http://"+ln.Addr().String()+"/metrics")
	}
	sys, err := localrun.Start(ctx, cfg, log)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "\nSurge is running at %s (%sup to %d workers; data and logs in %s).\n"+
		"Try: curl -F inputFile=@photo.jpg %s/   Status: %s/status   Stop: Ctrl-C\n\n",
		sys.URL, webTiersSaid(sys.WebTiers()), cfg.MaxWorkers, cfg.Backend.DataDir, sys.URL, sys.URL)
	if cfg.Host == "" {
		fmt.Fprintf(os.Stderr, "The web tier listens on all interfaces: anyone who can reach this machine can upload.\n"+
			"Set -host 127.0.0.1 (SURGE_HOST) to keep it local.\n\n")
	}
	var tiers func() webCount
	if cfg.Web > 1 {
		tiers = func() webCount { return webTiersUp(sys.WebTiers()) }
	}
	stopLine := line.start(ctx, sys.URL, tiers)
	select {
	case <-ctx.Done():
		stopLine()
		fmt.Fprintf(os.Stderr, "stopping: no new uploads; the open ones get up to %v to be answered while the workers keep going "+
			"(Ctrl-C again: answer them 503 with their ids now); then the workers finish what they hold\n", cfg.DrainTimeout)
		again := make(chan os.Signal, 1)
		signal.Notify(again, os.Interrupt, syscall.SIGTERM)
		defer signal.Stop(again)
		go func() {
			<-again
			sys.Hurry()
		}()
	case <-sys.Done():
		stopLine()
		if err := sys.Exited(); err != nil {
			fmt.Fprintf(os.Stderr, "%v; stopping\n", err)
		} else {
			fmt.Fprintln(os.Stderr, "the web tier exited; stopping")
		}
	}
	_, err = sys.Stop(context.Background())
	return err
}

// workerArgs finds the runtime and model once, up front, and loads them
// as the workers will, so a missing or broken file is reported here
// rather than by every worker; the workers get the exact paths, the web
// tier the name their answers will carry.
func workerArgs(ctx context.Context, cfg recognize.Config, concurrency int) (args []string, model string, err error) {
	log := config.Logger()
	if ecfg, ok := cfg.External(1); ok {
		// One model process, started and stopped here, checks the command
		// and gives the name the workers' answers will carry.
		ext, err := recognize.StartExternal(ctx, ecfg, log)
		if err != nil {
			return nil, "", err
		}
		model = ext.Name()
		ext.Close()
		args = cfg.Args()
	} else {
		files, err := recognize.Resolve(ctx, cfg, log)
		if err != nil {
			return nil, "", err
		}
		// Loaded from the paths the workers get, the model has the name
		// theirs will have (one fetched by URL is named by its cache folder).
		wcfg := files.Config(cfg.Threads)
		classifier, _, err := recognize.Load(ctx, wcfg, log)
		if err != nil {
			return nil, "", err
		}
		model = classifier.Name()
		classifier.Close()
		args = wcfg.Args()
	}
	if concurrency > 0 {
		args = append(args, "-concurrency", strconv.Itoa(concurrency))
	}
	return args, model, nil
}

// webTiersSaid describes several web tiers for the start-up message: how
// many, how they share the port, their ids; nothing for one.
func webTiersSaid(tiers []*localrun.WebTier) string {
	if len(tiers) <= 1 {
		return ""
	}
	ids := make([]string, len(tiers))
	for i, t := range tiers {
		ids[i] = t.ID
	}
	return fmt.Sprintf("%d web tiers sharing the port, the kernel's SO_REUSEPORT spreading connections over them: %s; a tier that dies is replaced under a new id; ",
		len(tiers), strings.Join(ids, ", "))
}

// webTiersUp counts the tiers whose process is running.
func webTiersUp(tiers []*localrun.WebTier) webCount {
	c := webCount{All: len(tiers)}
	for _, t := range tiers {
		select {
		case <-t.Done():
		default:
			c.Up++
		}
	}
	return c
}
