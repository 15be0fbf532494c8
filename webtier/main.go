// Command webtier serves the upload API on port 8000: it stores each
// image, queues a request and answers "<stem>:<label>" when the result
// comes back.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"syscall"
	"time"

	"github.com/surgeml/surge/events"
	"github.com/surgeml/surge/internal/aws"
	"github.com/surgeml/surge/internal/backend"
	"github.com/surgeml/surge/internal/config"
	"github.com/surgeml/surge/internal/embedded"
	"github.com/surgeml/surge/internal/frontend"
	"github.com/surgeml/surge/internal/metrics"
)

func main() {
	if err := run(os.Args[1:], os.Getenv); err != nil {
		fmt.Fprintln(os.Stderr, "webtier:", err)
		os.Exit(1)
	}
}

func run(args []string, getenv func(string) string) error {
	fs := flag.NewFlagSet("webtier", flag.ExitOnError)
	bcfg := backend.Flags(fs)
	cfg := frontend.Flags(fs)
	host := fs.String("host", "", "address to listen on, empty for all")
	port := fs.Int("port", events.WebPort, "port to listen on")
	listenFD := fs.Int("listen-fd", 0, "serve on this inherited listening socket instead of -host/-port (used by surge run)")
	handover := fs.String("handover", "",
		"file that carries GET /results/{id} across a restart: written on stop, read on start (default <data>/webtier-handover.json with the local backend and no -instance-id, none otherwise)")
	emfCfg := metrics.EMFFlags(fs)
	instance := fs.String("instance-id", "",
		`this web instance's id, when it is one of several behind a load balancer: it then reads a reply queue of its own, <prefix>-resp-<id>, which it creates ("imds": the EC2 instance id; empty: one web tier, reading the shared response queue)`)
	reuse := fs.Bool("reuse-answers", true, "answer an upload from the results table when it holds the answer for the same name, bytes and model")
	if err := config.Parse(fs, args, getenv); err != nil {
		return err
	}

	bcfg.DeadLetters = true
	log := config.Logger()
	// The upload budget bounds the bytes held, not the garbage they leave
	// nor the copies made as a buffer grows: without a soft limit the
	// process reached 2.5 times the budget (issue 23). GOMEMLIMIT, if set,
	// wins.
	if _, set := os.LookupEnv("GOMEMLIMIT"); !set {
		limit := cfg.MemoryLimit()
		debug.SetMemoryLimit(limit)
		log.Debug("soft memory limit", "bytes", limit)
	}
	ctx, hurry := stopSignals(log)

	if *instance == "imds" {
		id, err := aws.LookupInstanceID(ctx)
		if err != nil {
			return fmt.Errorf("-instance-id imds: %w", err)
		}
		*instance = id
	}
	if *instance != "" && !events.ValidQueueName(events.NamesFor(bcfg.Prefix).ReplyQueue(*instance)) {
		return fmt.Errorf("-instance-id %q: its reply queue name must be letters, digits, - and _, at most 80 with the prefix", *instance)
	}
	if bcfg.Kind == "" || bcfg.Kind == "local" {
		// A second web tier on the same queues would take this one's
		// results, and its clients would time out; web tiers with ids each
		// read their own reply queue, and hold their own lock, which also
		// tells the sweeper they are alive. A predecessor whose
		// supervisor was killed may still be answering its last uploads
		// (see stopSignals): it gets a moment to hand over and leave.
		lockName := "webtier.lock"
		if *instance != "" {
			lockName = embedded.WebTierLock(*instance)
		}
		lock, err := embedded.LockDirWithin(bcfg.DataDir, lockName, "webtier", 15*time.Second)
		if err != nil {
			return err
		}
		defer lock.Release()
		// One of several needs no handover: its answers are recorded by
		// request id in the results table, where any of them finds them.
		if *handover == "" && *instance == "" {
			*handover = filepath.Join(bcfg.DataDir, "webtier-handover.json")
		}
	}
	b, err := backend.Open(ctx, *bcfg)
	if err != nil {
		return err
	}
	defer b.Close()
	ln, err := listen(*listenFD, net.JoinHostPort(*host, strconv.Itoa(*port)))
	if err != nil {
		return err
	}
	emf, stopEMF, err := emfCfg.Start(context.WithoutCancel(ctx), log, metrics.WebEMF()...)
	if err != nil {
		return err
	}
	// Stopped after Serve returns, so the last line counts the uploads
	// answered while draining.
	defer stopEMF()
	cfg.EMF = emf
	answers := frontend.Answers(b.Table)
	if !*reuse {
		answers = nil
	}
	fb := frontend.Backends{
		Requests: b.Requests, Responses: b.Responses, Inputs: b.Inputs, Fleet: b.Fleet, DeadLetters: b.RequestDeadLetters,
		Answers: answers, AnswersName: b.TableName,
	}
	if *instance != "" {
		name := events.NamesFor(bcfg.Prefix).ReplyQueue(*instance)
		replies, err := b.Replies.Create(ctx, name)
		if err != nil {
			return err
		}
		fb.Replies, fb.ReplyTo, fb.Others, fb.Records = replies, name, b.Replies, b.Table
		log.Info("reading a reply queue of this instance's own", "queue", name)
	}
	srv := frontend.New(*cfg, fb, log)
	if *handover != "" {
		h, err := frontend.ReadHandover(*handover)
		if err != nil {
			// Losing it costs clients their /results, not the service.
			log.Error("taking over from the previous web tier", "err", err)
		} else if n := srv.TakeOver(h); n > 0 {
			log.Info("took over requests from the previous web tier", "requests", n, "from", *handover)
		}
	}
	go func() {
		<-hurry
		srv.Hurry()
	}()
	log.Info("web tier listening", "addr", ln.Addr().String(), "backend", bcfg.Kind)
	if listensEverywhere(ln.Addr()) {
		// The cloud needs it; a laptop seldom does.
		log.Info("listening on all interfaces: anyone who can reach this machine can upload; set -host 127.0.0.1 (SURGE_HOST) to keep it local")
	}
	err = srv.Serve(ctx, ln)
	if *handover != "" {
		h := srv.Handover()
		if herr := frontend.WriteHandover(*handover, h); herr != nil {
			log.Error("handing over to the next web tier", "err", herr)
		} else if len(h.Jobs) > 0 {
			log.Info("handed over requests to the next web tier", "requests", len(h.Jobs), "to", *handover)
		}
	}
	return err
}

// stopSignals returns a context that ends at the first SIGTERM, SIGINT or
// SIGHUP, which starts a drain, and a channel closed at a second signal or
// at SIGHUP, which cuts the drain short. SIGHUP is what a supervisor that
// died leaves its web tier (webproc's parent-death signal): the fleet went
// with it, so waiting would answer nothing.
func stopSignals(log *slog.Logger) (context.Context, <-chan struct{}) {
	ctx, stop := context.WithCancel(context.Background())
	hurry := make(chan struct{})
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, os.Interrupt, syscall.SIGHUP)
	go func() {
		for sig := range sigs {
			if ctx.Err() != nil || sig == syscall.SIGHUP {
				log.Info("stopping at once", "signal", sig.String())
				close(hurry)
				stop()
				return
			}
			log.Info("stopping", "signal", sig.String())
			stop()
		}
	}()
	return ctx, hurry
}

// listen opens addr, or adopts a socket a supervisor already bound, so
// that a port clash is reported by the supervisor before anything starts.
func listen(fd int, addr string) (net.Listener, error) {
	if fd == 0 {
		return net.Listen("tcp", addr)
	}
	f := os.NewFile(uintptr(fd), "listener")
	defer f.Close()
	ln, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("adopting listener fd %d: %w", fd, err)
	}
	return ln, nil
}

// listensEverywhere reports whether addr is a wildcard address: every
// interface of the machine.
func listensEverywhere(addr net.Addr) bool {
	tcp, ok := addr.(*net.TCPAddr)
	return ok && tcp.IP.IsUnspecified()
}
