package workload

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/surgeml/surge/events"
	"github.com/surgeml/surge/internal/config"
)

const commandUsage = `usage: surge workload -images DIR [-labels CSV] [-url URL] [flags]
   or: surge workload --num_request=N --ip_addr=IP --image_folder=DIR --prediction_file=CSV

Uploads each image of DIR as one request, 100 at once, sends a request
again once when its connection was cut before any answer (-retry-cut),
re-sends the failed ones once more (-retries), and checks each answer's label against the
Image,Results CSV, the file's name before its first dot being its Image. The
course generator's flags work unchanged. Prints the course generator's
attempt lines and statistics on stdout (Total response time and Total Test
Duration are both the run's wall time), then Surge's latency percentiles,
throughput, the grader's latency (total time / requests) and the requests
sent again after a cut connection; progress goes to stderr. Exits 1 when any request failed, was answered wrongly or was
answered for another file.

flags:
`

// options are the command's flags, checked.
type options struct {
	url, images, labels string
	numRequest          int // 0: every file
	concurrency         int
	field               string
	timeout             time.Duration
	retries             int
	retryCut            bool
}

// parseArgs reads Surge's flags and the course generator's, which name the
// same things: a flag given under both names must agree. Each may also be
// given as its variable, through getenv (see config.Parse).
func parseArgs(args []string, getenv func(string) string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("workload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), commandUsage)
		fs.PrintDefaults()
	}
	var o options
	fs.StringVar(&o.url, "url", fmt.Sprintf("http://127.0.0.1:%d/", events.WebPort), "web tier URL; wins over --ip_addr")
	ip := fs.String("ip_addr", "", "the course's flag: the web tier's address, posted to as http://IP:8000/")
	images := fs.String("images", "", "folder of images to upload, one request each")
	imageFolder := fs.String("image_folder", "", "the course's name for -images")
	labels := fs.String("labels", "", "Image,Results CSV to check answers against (optional)")
	predictionFile := fs.String("prediction_file", "", "the course's name for -labels")
	fs.IntVar(&o.numRequest, "num_request", 0, "send only the first N images in name order (the course's generator takes its directory listing's order); default all")
	fs.IntVar(&o.concurrency, "concurrency", 100, "requests in flight at once")
	fs.StringVar(&o.field, "field", "inputFile", "multipart field name (older clients use myfile)")
	fs.DurationVar(&o.timeout, "timeout", 0, "per-request timeout (default 10m)")
	fs.IntVar(&o.retries, "retries", 1, "passes re-sending the requests that failed, after the first (0: none)")
	fs.BoolVar(&o.retryCut, "retry-cut", true, "send a request again, once, 250 ms later on a new connection, when its connection was cut before any answer (a web tier that died under it)")
	if err := config.Parse(fs, args, getenv); err != nil {
		return options{}, err
	}
	if fs.NArg() > 0 {
		return options{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if *ip != "" && !given["url"] {
		o.url = "http://" + net.JoinHostPort(*ip, "8000") + "/"
	}
	var err error
	if o.images, err = oneOf("-images", *images, "--image_folder", *imageFolder); err != nil {
		return options{}, err
	}
	if o.labels, err = oneOf("-labels", *labels, "--prediction_file", *predictionFile); err != nil {
		return options{}, err
	}
	switch {
	case o.images == "":
		fs.Usage()
		return options{}, errors.New("-images (or --image_folder) is required")
	case given["num_request"] && o.numRequest < 1:
		return options{}, fmt.Errorf("--num_request=%d: send at least one request", o.numRequest)
	case o.concurrency < 1:
		return options{}, fmt.Errorf("-concurrency=%d: at least one request must be in flight", o.concurrency)
	case o.retries < 0:
		return options{}, fmt.Errorf("-retries=%d is negative", o.retries)
	}
	return o, nil
}

// oneOf is the value of a flag that has two names.
func oneOf(name, value, alias, aliasValue string) (string, error) {
	if value != "" && aliasValue != "" && value != aliasValue {
		return "", fmt.Errorf("%s %q and %s %q disagree", name, value, alias, aliasValue)
	}
	if value != "" {
		return value, nil
	}
	return aliasValue, nil
}

// Command is `surge workload`: it runs the workload of args and of the
// variables getenv reads (nil: none), writes the course generator's lines
// and Surge's figures to stdout, and returns an error when a request
// failed or was answered wrongly. progress, if set, makes a progress
// display for one attempt; it may return nil.
func Command(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, progress func(what string) func(done, total int)) error {
	o, err := parseArgs(args, getenv, stderr)
	if err != nil {
		return err
	}
	files, err := ImagesIn(o.images)
	if err != nil {
		return err
	}
	if o.numRequest > len(files) {
		return fmt.Errorf("--num_request=%d, but %s holds only %d images", o.numRequest, o.images, len(files))
	}
	if o.numRequest > 0 {
		files = files[:o.numRequest]
	}
	cfg := Config{
		URL: o.url, Files: files, Concurrency: o.concurrency, Field: o.field, Timeout: o.timeout, Retries: o.retries, RetryCut: o.retryCut,
		Attempted: func(a Attempt) { fmt.Fprintln(stdout, a) },
	}
	if o.labels != "" {
		if cfg.Expected, err = ReadLabels(o.labels); err != nil {
			return err
		}
	}
	if progress != nil {
		shown, bar := 0, func(done, total int) {}
		cfg.Progress = func(attempt, done, total int) {
			if attempt != shown {
				shown, bar = attempt, progress(fmt.Sprintf("attempt %d", attempt))
			}
			if bar != nil {
				bar(done, total)
			}
		}
	}
	rep, err := Run(ctx, cfg)
	if rep.Requests == 0 {
		return err
	}
	if err == nil {
		fmt.Fprintln(stdout, prefix+"All requests have been processed or retried.")
	}
	rep.Print(stdout, cfg.Expected)
	if err != nil {
		return fmt.Errorf("running the workload: %w", err)
	}
	if !rep.OK() {
		return fmt.Errorf("%d of %d requests failed, %d were answered wrongly, %d for another file", rep.Failed, rep.Requests, rep.Wrong, rep.Misrouted)
	}
	return nil
}
