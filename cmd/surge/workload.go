package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/surgeml/surge/internal/labelcsv"
	"github.com/surgeml/surge/internal/workload"
)

func workloadCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("workload", flag.ExitOnError)
	var cfg workload.Config
	fs.StringVar(&cfg.URL, "url", "http://127.0.0.1:8000/", "web tier URL")
	images := fs.String("images", "", "folder of images to upload, one request each")
	labels := fs.String("labels", "", "Image,Results CSV to check answers against (optional)")
	fs.IntVar(&cfg.Concurrency, "concurrency", 100, "requests in flight at once")
	fs.StringVar(&cfg.Field, "field", "inputFile", "multipart field name (older clients use myfile)")
	fs.DurationVar(&cfg.Timeout, "timeout", 0, "per-request timeout (default 10m)")
	fs.Parse(args)
	if *images == "" {
		fs.Usage()
		return errors.New("-images is required")
	}
	files, err := workload.ImagesIn(*images)
	if err != nil {
		return err
	}
	cfg.Files = files
	if *labels != "" {
		if cfg.Expected, err = labelcsv.Read(*labels); err != nil {
			return err
		}
	}
	cfg.Progress = progress("requests")
	rep, err := workload.Run(ctx, cfg)
	rep.Print(os.Stdout, cfg.Expected)
	if err != nil {
		return err
	}
	if !rep.OK() {
		return fmt.Errorf("%d failed, %d wrong", rep.Failed, rep.Wrong)
	}
	return nil
}
