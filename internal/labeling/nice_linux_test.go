package labeling_test

import (
	"fmt"
	"image"
	"log/slog"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/surgeml/surge/internal/labeling"
	"github.com/surgeml/surge/internal/testenv"
)

// niceRecognizer records the niceness of the threads it runs on.
type niceRecognizer struct {
	labeling.Recognizer
	mu   *sync.Mutex
	seen map[int]bool
}

func (n niceRecognizer) Recognize(img image.Image) (string, float64, error) {
	// The raw syscall gives 20 - nice.
	prio, err := syscall.Getpriority(syscall.PRIO_PROCESS, syscall.Gettid())
	n.mu.Lock()
	if err == nil {
		n.seen[20-prio] = true
	}
	n.mu.Unlock()
	return n.Recognizer.Recognize(img)
}

// With InferenceNice, every image is recognised on a thread at that
// niceness; without it, at the process's own.
func TestInferenceNice(t *testing.T) {
	for _, nice := range []int{0, 7} {
		t.Run(fmt.Sprintf("nice=%d", nice), func(t *testing.T) {
			r := newRig(t, 30*time.Second, 5)
			rec := niceRecognizer{r.recognizer, &sync.Mutex{}, map[int]bool{}}
			w := labeling.New(labeling.Config{Wait: time.Second, Inferences: 2, InferenceNice: nice},
				r.requests, r.responses, r.inputs, r.outputs, r.table, rec, slog.New(slog.DiscardHandler))
			for i := range 6 {
				r.submit(t, fmt.Sprintf("id-%d", i), fmt.Sprintf("%d-dog.jpg", i), testenv.Photo(t, "dog.jpg"))
			}
			r.runUntilEmpty(t, w)

			own, err := syscall.Getpriority(syscall.PRIO_PROCESS, 0)
			if err != nil {
				t.Fatal(err)
			}
			want := nice
			if nice == 0 {
				want = 20 - own
			}
			rec.mu.Lock()
			defer rec.mu.Unlock()
			if len(rec.seen) != 1 || !rec.seen[want] {
				t.Errorf("recognised at niceness %v, want only %d", rec.seen, want)
			}
		})
	}
}
