package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/surgeml/surge/events"
	"github.com/surgeml/surge/internal/backend"
	"github.com/surgeml/surge/internal/config"
	"github.com/surgeml/surge/internal/localrun"
	"github.com/surgeml/surge/internal/recognize"
	"github.com/surgeml/surge/internal/workload"
)

// chaosCmd runs the face workload against the whole local system while
// killing workers (and, with -web above 1, web tiers), restarting the
// scaler and restarting the system once, and reports what every client
// finally learned. It exits non-zero if any answer was wrong or any
// request lost.
func chaosCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("chaos", flag.ExitOnError)
	mcfg := recognize.Flags(fs)
	images := fs.String("images", "", "folder of images to send, cycled through (e.g. ../shared/datasets/faces/face_images_1000)")
	labels := fs.String("labels", "", "Image,Results CSV of those images")
	requests := fs.Int("requests", 3000, "requests to send, each under its own name")
	concurrency := fs.Int("concurrency", 100, "requests in flight at once")
	kills := fs.Int("kills", 0, "busy workers to kill with SIGKILL, spread over the run (default one per 300 requests)")
	web := fs.Int("web", 1, "web tiers sharing the port through the kernel's SO_REUSEPORT")
	webKills := fs.Int("web-kills", 0, "with -web above 1, web tiers to kill with SIGKILL, spread over the run (default one per 1000 requests, at least one); clients send a request cut by a kill again, once")
	scalerRestarts := fs.Int("scaler-restarts", 2, "scaler restarts, spread over the run")
	restart := fs.Bool("restart", true, "stop the whole system half-way, as Ctrl-C does, and start it again on the same data")
	limit := fs.Duration("max-duration", 15*time.Minute, "give up after this long")
	maxWorkers := fs.Int("max-workers", events.DefaultMaxWorkers, "fleet cap")
	visibility := fs.Duration("visibility", 5*time.Second, "request visibility timeout: how soon a killed worker's request is handed out again")
	grace := fs.Duration("reply-queue-grace", 5*time.Second, "how long a dead web tier's reply queue must stay empty before it is deleted: short, since the run's end waits for its deletion")
	drain := fs.Duration("drain-timeout", 2*time.Second, "the web tier's drain at the restart: short, so that some clients get 503 with an id and collect their answers later")
	data := fs.String("data", "", "data directory (default: a new temporary one, removed afterwards)")
	bin := fs.String("bin", "", "directory of the webtier and worker binaries (default: beside this one)")
	if err := config.Parse(fs, args, os.Getenv); err != nil {
		return err
	}
	if *images == "" {
		return errors.New("-images is required")
	}
	if *web < 1 {
		return fmt.Errorf("-web %d: at least one web tier", *web)
	}
	files, err := workload.ImagesIn(*images)
	if err != nil {
		return err
	}
	var expected map[string]string
	if *labels != "" {
		if expected, err = workload.ReadLabels(*labels); err != nil {
			return err
		}
	}
	if *bin == "" {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		*bin = dirOf(exe)
	}
	if *data == "" {
		dir, err := os.MkdirTemp("", "surge-chaos-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		*data = dir
	}
	ctx, cancel := context.WithTimeout(ctx, *limit)
	defer cancel()
	wargs, model, err := workerArgs(ctx, *mcfg, 1)
	if err != nil {
		return err
	}
	log := config.Logger()
	rep, err := localrun.RunChaos(ctx, localrun.ChaosConfig{
		System: localrun.Config{
			Bin:        *bin,
			Backend:    backend.Config{Kind: "local", Prefix: "chaos", DataDir: *data, Visibility: *visibility, MaxReceives: events.MaxReceives},
			Web:        *web,
			MaxWorkers: *maxWorkers, Tick: time.Second, ScaleInDelay: time.Second, DrainTimeout: *drain, ReplyQueueGrace: *grace,
			WorkerArgs: wargs, WebArgs: []string{"-model-name", model},
		},
		Images: files, Expected: expected, Requests: *requests, Concurrency: *concurrency,
		Kills: *kills, WebKills: *webKills, Scaler: *scalerRestarts, Restart: *restart,
		Progress: func(event string) { fmt.Fprintln(os.Stderr, "chaos:", event) },
	}, log)
	if err != nil {
		return err
	}
	rep.Print(os.Stdout)
	if !rep.OK() {
		return fmt.Errorf("chaos: %d wrong, %d lost, queues left with %d requests and %d responses, reply queues of dead web tiers left: %q",
			rep.Wrong, rep.Lost, rep.End.Requests, rep.End.Responses, rep.End.DeadReplyQueues)
	}
	return nil
}
