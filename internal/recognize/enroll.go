package recognize

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/surgeml/surge/events"
	"github.com/surgeml/surge/internal/vision"
)

// EnrollReport says what an enrollment used and skipped.
type EnrollReport struct {
	Enrolled  int
	Unlabeled []string // images with no row in the labels
	Missing   []string // labelled stems with no image
}

// EnrollDir enrolls every image in dir whose stem has a label. progress, if
// set, is called after each image.
func EnrollDir(g *Gallery, c *Classifier, dir string, labels map[string]string, progress func(done, total int)) (EnrollReport, error) {
	var rep EnrollReport
	entries, err := os.ReadDir(dir)
	if err != nil {
		return rep, fmt.Errorf("enrolling: %w", err)
	}
	seen := map[string]bool{}
	var files []string
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		stem := events.Stem(e.Name())
		if _, ok := labels[stem]; !ok {
			rep.Unlabeled = append(rep.Unlabeled, e.Name())
			continue
		}
		seen[stem] = true
		files = append(files, e.Name())
	}
	for stem := range labels {
		if !seen[stem] {
			rep.Missing = append(rep.Missing, stem)
		}
	}
	sort.Strings(rep.Missing)
	if len(files) == 0 {
		return rep, fmt.Errorf("enrolling: no image in %s has a label", dir)
	}
	for i, name := range files {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return rep, fmt.Errorf("enrolling: %w", err)
		}
		img, err := vision.Decode(data, vision.DefaultMaxPixels)
		if err != nil {
			return rep, fmt.Errorf("enrolling %s: %w", name, err)
		}
		stem := events.Stem(name)
		if err := g.Enroll(c, img, labels[stem], stem); err != nil {
			return rep, err
		}
		rep.Enrolled++
		if progress != nil {
			progress(i+1, len(files))
		}
	}
	return rep, nil
}
