package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	goruntime "runtime"

	"github.com/surgeml/surge/events"
	"github.com/surgeml/surge/internal/assets"
	"github.com/surgeml/surge/internal/config"
	"github.com/surgeml/surge/internal/deploy"
	"github.com/surgeml/surge/internal/recognize"
	"github.com/surgeml/surge/internal/vision"
	"github.com/surgeml/surge/internal/workload"
)

func classifyCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("classify", flag.ExitOnError)
	mcfg := recognize.Flags(fs)
	top := fs.Int("top", 1, "print the k best classes with their probabilities")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: surge classify [flags] image...")
		fs.PrintDefaults()
	}
	if err := config.Parse(fs, args, os.Getenv); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return errors.New("no image files given")
	}
	classifier, recognizer, err := recognize.Load(ctx, *mcfg, config.Logger())
	if err != nil {
		return err
	}
	defer classifier.Close()
	failed := 0
	for _, path := range fs.Args() {
		line, err := classifyFile(classifier, recognizer, path, *top)
		if err != nil {
			failed++
			fmt.Fprintf(os.Stderr, "%s: %v\n", path, err)
			continue
		}
		fmt.Println(line)
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d files failed", failed, fs.NArg())
	}
	return nil
}

// classifyFile gives the same "<stem>:<label>" answer the pipeline does.
func classifyFile(c *recognize.Classifier, r recognize.Recognizer, path string, top int) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	img, err := vision.Decode(data, vision.DefaultMaxPixels)
	if err != nil {
		return "", err
	}
	stem := events.Stem(path)
	if top > 1 {
		preds, err := c.Classify(img, top)
		if err != nil {
			return "", err
		}
		line := stem + ":" + preds[0].Label
		for _, p := range preds {
			line += fmt.Sprintf("\t%s %.3f", p.Label, p.Score)
		}
		return line, nil
	}
	label, _, err := r.Recognize(img)
	if err != nil {
		return "", err
	}
	return stem + ":" + label, nil
}

func enrollCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("enroll", flag.ExitOnError)
	mcfg := recognize.Flags(fs)
	images := fs.String("images", "", "folder of images to enroll")
	labels := fs.String("labels", "", "Image,Results CSV naming each image's label")
	threshold := fs.Float64("threshold", recognize.DefaultThreshold, "lowest cosine similarity that counts as a match")
	if err := config.Parse(fs, args, os.Getenv); err != nil {
		return err
	}
	out := mcfg.Gallery
	mcfg.Gallery = ""
	if *images == "" || *labels == "" || out == "" {
		fs.Usage()
		return errors.New("-images, -labels and -gallery are required")
	}
	want, err := workload.ReadLabels(*labels)
	if err != nil {
		return err
	}
	classifier, _, err := recognize.Load(ctx, *mcfg, config.Logger())
	if err != nil {
		return err
	}
	defer classifier.Close()
	g := &recognize.Gallery{Threshold: *threshold}
	rep, err := recognize.EnrollDir(g, classifier, *images, want, progress("enrolling"))
	if err != nil {
		return err
	}
	if err := g.Save(out); err != nil {
		return err
	}
	fmt.Printf("enrolled %d images (%d labels) into %s\n", rep.Enrolled, distinct(g), out)
	if len(rep.Unlabeled) > 0 {
		fmt.Fprintf(os.Stderr, "warning: %d images have no label and were skipped, e.g. %s\n", len(rep.Unlabeled), rep.Unlabeled[0])
	}
	if len(rep.Missing) > 0 {
		fmt.Fprintf(os.Stderr, "warning: %d labelled images are missing, e.g. %s\n", len(rep.Missing), rep.Missing[0])
	}
	return nil
}

func distinct(g *recognize.Gallery) int {
	seen := map[string]bool{}
	for _, e := range g.Entries {
		seen[e.Label] = true
	}
	return len(seen)
}

func fetchCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("fetch", flag.ExitOnError)
	mcfg := recognize.Flags(fs)
	runtimeOnly := fs.Bool("runtime-only", false, "fetch only the ONNX Runtime libraries (this machine's, and linux/amd64's and linux/arm64's for deployments)")
	cdkOnly := fs.Bool("cdk-cli", false, "fetch only the pinned AWS CDK CLI")
	if err := config.Parse(fs, args, os.Getenv); err != nil {
		return err
	}
	log := config.Logger()
	if *cdkOnly {
		bin, err := deploy.ResolveCLI(ctx, mcfg.Cache, true, log)
		if err != nil {
			return err
		}
		fmt.Println("AWS CDK CLI:", bin)
		return nil
	}
	// What deployments ship, whatever this machine is: a stack's workers
	// run x86_64 or Arm (Graviton) instances.
	for _, arch := range []string{"amd64", "arm64"} {
		src, err := assets.RuntimeSourceFor(arch)
		if err != nil {
			return err
		}
		src.Cache, src.Log = mcfg.Cache, log
		lib, err := assets.Resolve(ctx, src)
		if err != nil {
			return err
		}
		fmt.Printf("ONNX Runtime for linux/%s instances: %s\n", arch, lib)
	}
	if goruntime.GOOS != "linux" {
		fmt.Printf("this machine (%s/%s) runs no ONNX Runtime of Surge's: local runs and classification need Linux\n", goruntime.GOOS, goruntime.GOARCH)
		return nil
	}
	lib, err := recognize.ResolveRuntime(ctx, *mcfg, log)
	if err != nil {
		return err
	}
	fmt.Println("ONNX Runtime:", lib)
	if *runtimeOnly {
		return nil
	}
	classifier, recognizer, err := recognize.Load(ctx, *mcfg, log)
	if err != nil {
		return err
	}
	defer classifier.Close()
	fmt.Println("model:", recognizer.Name(), "loads")
	return nil
}
