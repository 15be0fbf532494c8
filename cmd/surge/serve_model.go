package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/surgeml/surge/internal/config"
	"github.com/surgeml/surge/internal/recognize"
	"github.com/surgeml/surge/internal/vision"
)

// serveModelCmd answers the external model protocol (docs/models.md) on
// stdin and stdout with the project's own ONNX recognizer: a worker run
// with -model-command "surge serve-model ..." gives the same answers as
// one that loads the model itself.
func serveModelCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("serve-model", flag.ExitOnError)
	mcfg := recognize.Flags(fs)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: surge serve-model [flags]  (reads image paths on stdin, answers <label>\\t<score> on stdout; -model-command is ignored)")
		fs.PrintDefaults()
	}
	if err := config.Parse(fs, args, os.Getenv); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	// The worker that starts this may have its -model-command in the
	// environment (SURGE_MODEL_COMMAND), which this process inherits: it
	// is the model, so it never starts another.
	mcfg.Command = ""
	classifier, recognizer, err := recognize.Load(ctx, *mcfg, config.Logger())
	if err != nil {
		return err
	}
	defer classifier.Close()
	return serveModel(ctx, recognizer, os.Stdin, os.Stdout)
}

// serveModel says it is ready, then answers each image path read from in
// with "<label>\t<score>", or "error\t<why>" for a file that is not an
// image it can decode. A failure of the model itself ends it with an
// error: the worker restarts it and asks again.
func serveModel(ctx context.Context, r recognize.Recognizer, in io.Reader, out io.Writer) error {
	w := bufio.NewWriter(out)
	oneLine := strings.NewReplacer("\t", " ", "\n", " ", "\r", " ")
	answer := func(format string, a ...any) error {
		fmt.Fprintf(w, format, a...)
		return w.Flush()
	}
	if err := answer("ready %s\n", oneLine.Replace(r.Name())); err != nil {
		return err
	}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 4096), 64<<10)
	for sc.Scan() && ctx.Err() == nil {
		data, err := os.ReadFile(sc.Text())
		if err != nil {
			if err := answer("error\t%s\n", oneLine.Replace(err.Error())); err != nil {
				return err
			}
			continue
		}
		img, err := vision.Decode(data, vision.DefaultMaxPixels)
		if err != nil {
			if err := answer("error\t%s\n", oneLine.Replace(err.Error())); err != nil {
				return err
			}
			continue
		}
		label, score, err := r.Recognize(img)
		if err != nil {
			return fmt.Errorf("recognising %s: %w", sc.Text(), err)
		}
		if err := answer("%s\t%g\n", oneLine.Replace(label), score); err != nil {
			return err
		}
	}
	return errors.Join(sc.Err(), ctx.Err())
}
