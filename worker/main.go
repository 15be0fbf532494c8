// Command worker is the app tier: it long-polls the request queue and
// labels each uploaded image with the configured model.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/surgeml/surge/internal/apptier"
	"github.com/surgeml/surge/internal/backend"
	"github.com/surgeml/surge/internal/config"
	"github.com/surgeml/surge/internal/procfleet"
	"github.com/surgeml/surge/internal/recognize"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(1)
	}
}

func run() error {
	fs := flag.NewFlagSet("worker", flag.ExitOnError)
	bcfg := config.BackendFlags(fs)
	mcfg := config.ModelFlags(fs)
	hostname, _ := os.Hostname()
	name := fs.String("name", config.Env(procfleet.EnvInstance, hostname), "instance name reported in results (env "+procfleet.EnvInstance+")")
	concurrency := fs.Int("concurrency", config.EnvInt("SURGE_CONCURRENCY", 1), "requests processed at once (env SURGE_CONCURRENCY)")
	wait := fs.Duration("wait", config.EnvDuration("SURGE_WAIT", 20*time.Second), "long-poll wait (env SURGE_WAIT)")
	statusFile := fs.String("status-file", os.Getenv(procfleet.EnvStatusFile), "report readiness and load here, for a local fleet (env "+procfleet.EnvStatusFile+")")
	fs.Parse(os.Args[1:])

	log := config.Logger().With("instance", *name)
	// SIGTERM is a drain: stop taking requests, finish the ones held.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()

	start := time.Now()
	classifier, recognizer, err := recognize.Load(ctx, *mcfg, log)
	if err != nil {
		return err
	}
	defer classifier.Close()
	b, err := backend.Open(ctx, *bcfg)
	if err != nil {
		return err
	}
	defer b.Close()

	report := procfleet.NewReporter(*statusFile)
	w := apptier.New(apptier.Config{
		Name:        *name,
		Concurrency: *concurrency,
		Visibility:  bcfg.Visibility,
		Wait:        *wait,
		MaxReceives: bcfg.MaxReceives,
		Held:        report.Held,
	}, b.Requests, b.Responses, b.Inputs, b.Outputs, recognizer, log)
	report.Ready()
	log.Info("worker ready", "model", recognizer.Name(), "concurrency", *concurrency, "startup", time.Since(start))
	err = w.Run(ctx)
	log.Info("worker stopped")
	return err
}
