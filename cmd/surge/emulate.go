package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/surgeml/surge/internal/assets"
	"github.com/surgeml/surge/internal/config"
	"github.com/surgeml/surge/internal/emulate"
	"github.com/surgeml/surge/internal/envvar"
	"github.com/surgeml/surge/internal/logging"
	"github.com/surgeml/surge/internal/recognize"
	"github.com/surgeml/surge/internal/scaling"
)

// emulateCmd runs the AWS deployment against moto_server on this machine.
func emulateCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("emulate", flag.ExitOnError)
	var cfg emulate.Config
	mcfg := config.ModelFlags(fs)
	fs.StringVar(&cfg.DataDir, "data", envvar.String("SURGE_DATA", ".emulate"), "directory for logs (env SURGE_DATA)")
	fs.StringVar(&cfg.Prefix, "prefix", envvar.String("SURGE_PREFIX", "surge"), "resource name prefix (env SURGE_PREFIX)")
	fs.StringVar(&cfg.Host, "host", envvar.String("HOST", ""), "web tier listen host, empty for all interfaces (env HOST)")
	fs.IntVar(&cfg.Port, "port", envvar.Int("PORT", 8000), "web tier port (env PORT)")
	fs.IntVar(&cfg.MaxWorkers, "max-workers", envvar.Int("MAX_WORKERS", scaling.DefaultMax), "most worker instances at once (env MAX_WORKERS)")
	fs.DurationVar(&cfg.Tick, "tick", time.Second, "the scaler Lambda's reconcile period")
	fs.DurationVar(&cfg.IdleShutdown, "idle-shutdown", 3*time.Second, "workers terminate their own instance after this long without work")
	bin := fs.String("bin", "", "directory of the webtier and worker binaries (default: beside this one)")
	fs.Parse(args)
	log := logging.Stderr()
	if *bin == "" {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		*bin = filepath.Dir(exe)
	}
	cfg.Bin = *bin
	files, err := localFiles(ctx, *mcfg)
	if err != nil {
		return err
	}
	cfg.Files = files
	cloud, err := emulate.Start(ctx, cfg, log)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "\nSurge on emulated AWS: web tier %s, moto_server %s (logs in %s).\n"+
		"The fleet as any AWS tool sees it:\n  AWS_ACCESS_KEY_ID=moto AWS_SECRET_ACCESS_KEY=moto aws --endpoint-url %s --region us-east-1 ec2 describe-instances\n"+
		"Stop: Ctrl-C\n\n", cloud.URL, cloud.Moto.URL, cfg.DataDir, cloud.Moto.URL)
	last := -1
	for ctx.Err() == nil {
		if n, err := cloud.RunningWorkers(ctx); err == nil && n != last {
			fmt.Fprintf(os.Stderr, "%s  app-tier instances running: %d\n", time.Now().Format("15:04:05"), n)
			last = n
		}
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Second):
		}
	}
	fmt.Fprintln(os.Stderr, "stopping")
	return cloud.Stop(context.Background())
}

// localFiles finds the local copies of what user data would install:
// the runtime library, the model and the optional gallery.
func localFiles(ctx context.Context, cfg recognize.Config) (emulate.Files, error) {
	log := logging.Stderr()
	lib, err := recognize.ResolveRuntime(ctx, cfg, log)
	if err != nil {
		return emulate.Files{}, err
	}
	mcfg := cfg.Model
	mcfg.Cache, mcfg.Log = cfg.Cache, log
	m, err := assets.ResolveModel(ctx, mcfg)
	if err != nil {
		return emulate.Files{}, err
	}
	f := emulate.Files{RuntimeLib: lib, Model: m.Path}
	if cfg.Gallery != "" {
		if f.Gallery, err = filepath.Abs(cfg.Gallery); err != nil {
			return f, err
		}
	}
	return f, nil
}
