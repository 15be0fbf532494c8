package main

import (
	"context"
	"errors"
	"flag"
	"os"

	"github.com/surgeml/surge/internal/workload"
)

func workloadCmd(ctx context.Context, args []string) error {
	err := workload.Command(ctx, args, os.Getenv, os.Stdout, os.Stderr, progress)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return err
}
