package workload

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// answering is a stand-in web tier on a real socket: it answers each
// upload from a fixed table, so the generator's checking and counting can
// be tested against known answers (the real web tier is driven by the
// end-to-end tests).
func answering(t *testing.T, answers map[string]func(w http.ResponseWriter)) (string, *atomic.Int32) {
	var peak, inFlight atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		time.Sleep(20 * time.Millisecond)
		f, h, err := r.FormFile("inputFile")
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		io.Copy(io.Discard, f)
		answers[h.Filename](w)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, &peak
}

func text(s string) func(http.ResponseWriter) {
	return func(w http.ResponseWriter) { io.WriteString(w, s) }
}

func TestRunCountsAndChecks(t *testing.T) {
	dir := t.TempDir()
	var files []string
	for _, n := range []string{"a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg"} {
		p := filepath.Join(dir, n)
		os.WriteFile(p, []byte("img"), 0o600)
		files = append(files, p)
	}
	url, peak := answering(t, map[string]func(http.ResponseWriter){
		"a.jpg": text("a:Paul"),
		"b.jpg": text("b:Emily"),
		"c.jpg": text("c:Bob"),                                                                      // wrong
		"d.jpg": func(w http.ResponseWriter) { http.Error(w, "no", http.StatusServiceUnavailable) }, // failed
		"e.jpg": text("x:Wang"),                                                                     // wrong stem: failed
	})
	var progress atomic.Int32
	rep, err := Run(context.Background(), Config{
		URL: url, Files: files, Concurrency: 3,
		Expected: map[string]string{"a": "Paul", "b": "Emily", "c": "German", "d": "Bill", "e": "Wang"},
		Progress: func(done, total int) { progress.Store(int32(done)) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Requests != 5 || rep.Completed != 3 || rep.Failed != 2 || rep.Correct != 2 || rep.Wrong != 1 || rep.OK() {
		t.Fatalf("report %+v", rep)
	}
	if p := peak.Load(); p != 3 {
		t.Errorf("peak concurrency %d, want 3", p)
	}
	if progress.Load() != 5 {
		t.Errorf("progress ended at %d", progress.Load())
	}
	var out strings.Builder
	rep.Print(&out, map[string]string{"c": "German"})
	for _, want := range []string{
		"Total number of requests: 5", "completed successfully: 3", "failed requests: 2",
		"correct predictions: 2", "wrong predictions: 1", "Total Test Duration", "p99",
		`wrong  c.jpg: got "Bob", want "German"`, "failed d.jpg: 503",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

func TestPercentile(t *testing.T) {
	var lat []time.Duration
	for i := 1; i <= 100; i++ {
		lat = append(lat, time.Duration(i)*time.Millisecond)
	}
	for p, want := range map[int]time.Duration{50: 50 * time.Millisecond, 95: 95 * time.Millisecond, 99: 99 * time.Millisecond, 100: 100 * time.Millisecond} {
		if got := percentile(lat, p); got != want {
			t.Errorf("p%d = %v, want %v", p, got, want)
		}
	}
	if got := percentile(lat[:1], 99); got != time.Millisecond {
		t.Errorf("p99 of one = %v", got)
	}
}
