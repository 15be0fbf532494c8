// Command worker is the app tier: it long-polls the request queue and
// labels each uploaded image with the configured model. The same binary
// runs as a local process (-backend local) and on EC2 (-backend aws),
// where it learns its name from IMDSv2 and, with -idle-shutdown,
// terminates its own instance once there is no work.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/ec2"

	"github.com/surgeml/surge/internal/aws"
	"github.com/surgeml/surge/internal/backend"
	"github.com/surgeml/surge/internal/config"
	"github.com/surgeml/surge/internal/embedded"
	"github.com/surgeml/surge/internal/labeling"
	"github.com/surgeml/surge/internal/metrics"
	"github.com/surgeml/surge/internal/recognize"
)

func main() {
	if err := run(os.Args[1:], os.Getenv); err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(1)
	}
}

func run(args []string, getenv func(string) string) error {
	fs := flag.NewFlagSet("worker", flag.ExitOnError)
	bcfg := backend.Flags(fs)
	mcfg := recognize.Flags(fs)
	lcfg := labeling.Flags(fs)
	statusFile := fs.String("status-file", "", "report readiness and load here, for a local fleet")
	metricsAddr := fs.String("metrics-addr", "", "serve Prometheus metrics on GET /metrics at this address, e.g. 127.0.0.1:0 for a free port, written to the status file (empty: off)")
	emfCfg := metrics.EMFFlags(fs)
	if err := config.Parse(fs, args, getenv); err != nil {
		return err
	}

	// SIGTERM is a drain: stop taking requests, finish the ones held.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	log := config.Logger()
	var self *ec2Self
	if bcfg.Kind == "aws" {
		var err error
		if self, err = whoAmI(ctx); err != nil {
			return err
		}
		if lcfg.Name == "" {
			lcfg.Name = self.id.Name
		}
		if lcfg.IdleExit > 0 {
			switch member, err := aws.IsPoolMember(ctx, self.ec2, self.id.ID); {
			case err != nil:
				log.Warn("could not tell whether this instance is in the warm pool; it will end itself when idle", "err", err)
			case member:
				// The scaler stops it into the pool on scale-in.
				log.Info("warm pool member: leaving scale-in to the scaler, no idle shutdown", "id", self.id.ID)
				lcfg.IdleExit = 0
			}
		}
	}
	if lcfg.Name == "" {
		lcfg.Name, _ = os.Hostname()
	}
	log = log.With("instance", lcfg.Name)

	start := time.Now()
	recognizer, closeModel, err := loadModel(ctx, *mcfg, lcfg.Inferences, log)
	if err != nil {
		return err
	}
	defer closeModel()
	b, err := backend.Open(ctx, *bcfg)
	if err != nil {
		return err
	}
	defer b.Close()

	report := embedded.NewReporter(*statusFile)
	emf, stopEMF, err := emfCfg.Start(context.WithoutCancel(ctx), log, metrics.WorkerEMF()...)
	if err != nil {
		return err
	}
	// Stopped last, so the final line counts the requests finished while
	// draining.
	defer stopEMF()
	reg := metrics.NewRegistry()
	observer := metrics.NewWorker(reg, emf)
	if *metricsAddr != "" {
		ln, err := metrics.Listen(*metricsAddr)
		if err != nil {
			return err
		}
		serveCtx, stopServing := context.WithCancel(context.WithoutCancel(ctx))
		defer stopServing()
		go func() {
			if err := metrics.Serve(serveCtx, ln, reg, log); err != nil {
				log.Error("metrics server stopped", "err", err)
			}
		}()
		report.Metrics(ln.Addr().String())
		log.Info("serving metrics", "addr", "http://"+ln.Addr().String()+"/metrics")
	}
	lcfg.Visibility, lcfg.MaxReceives, lcfg.Observer = bcfg.Visibility, bcfg.MaxReceives, observer
	lcfg.Held = func(n int) {
		report.Held(n)
		observer.Held(n)
	}
	w := labeling.New(*lcfg, b.Requests, b.Responses, b.Inputs, b.Outputs, b.Table, recognizer, log).WithReplies(b.Replies)
	report.Ready()
	log.Info("worker ready", "model", recognizer.Name(), "concurrency", w.Concurrency(), "inferences", w.Inferences(), "startup", time.Since(start))
	if self != nil {
		// The scaler replaces an instance not marked ready within its boot
		// deadline. Marking retries for about a minute (a new instance's
		// role can lag), in the background, so work starts now.
		go func() {
			if err := aws.MarkReady(ctx, self.ec2, self.id.ID); err != nil && ctx.Err() == nil {
				log.Error("could not mark this instance ready; working anyway, but the scaler will replace it after its boot deadline", "id", self.id.ID, "err", err)
			}
		}()
	}
	err = w.Run(ctx)
	if errors.Is(err, labeling.ErrIdle) && self != nil {
		// Holding nothing, the instance can go: terminating it here saves
		// the scaler a decision and works even if the scaler is down.
		log.Info("terminating this instance", "id", self.id.ID)
		return aws.Terminate(context.WithoutCancel(ctx), self.ec2, self.id.ID)
	}
	if errors.Is(err, labeling.ErrIdle) {
		err = nil
	}
	log.Info("worker stopped")
	return err
}

// loadModel starts the model process of -model-command, one per
// inference, or else loads the ONNX model (and ONNX Runtime, which a model
// process spares the worker).
func loadModel(ctx context.Context, cfg recognize.Config, inferences int, log *slog.Logger) (labeling.Recognizer, func(), error) {
	if ecfg, ok := cfg.External(inferences); ok {
		ext, err := recognize.StartExternal(ctx, ecfg, log)
		if err != nil {
			return nil, nil, err
		}
		return ext, func() { ext.Close() }, nil
	}
	classifier, recognizer, err := recognize.Load(ctx, cfg, log)
	if err != nil {
		return nil, nil, err
	}
	return recognizer, func() { classifier.Close() }, nil
}

// ec2Self is this worker's EC2 instance.
type ec2Self struct {
	id  aws.InstanceIdentity
	ec2 *ec2.Client
}

func whoAmI(ctx context.Context) (*ec2Self, error) {
	c, err := aws.LoadClients(ctx)
	if err != nil {
		return nil, err
	}
	id, err := aws.LookupInstance(ctx, c.Config)
	if err != nil {
		return nil, err
	}
	return &ec2Self{id: id, ec2: c.EC2}, nil
}
