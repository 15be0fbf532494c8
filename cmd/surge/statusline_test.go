package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/surgeml/surge/internal/frontend"
)

func TestStatusLine(t *testing.T) {
	at := time.Date(2026, 11, 26, 23, 59, 58, 0, time.Local).UnixMilli()
	for _, c := range []struct {
		name   string
		p      frontend.HistoryPoint
		errors int
		tiers  webCount
		want   string
	}{
		{"idle", frontend.HistoryPoint{At: at, Seconds: 2}, 0, webCount{},
			"23:59:58 backlog 0 · workers 0 (want 0) · 0.0 answers/s · 0 errors"},
		{"busy", frontend.HistoryPoint{At: at, Backlog: 40, Desired: 8, Running: 5, Answers: 91, Seconds: 2, P50Ms: 123.4, MaxMs: 900}, 1, webCount{},
			"23:59:58 backlog 40 · workers 5 (want 8) · 45.5 answers/s, median 123 ms · 1 error"},
		{"slow", frontend.HistoryPoint{At: at, Running: 1, Desired: 1, Answers: 1, Seconds: 2, P50Ms: 2345}, 3, webCount{1, 1},
			"23:59:58 backlog 0 · workers 1 (want 1) · 0.5 answers/s, median 2.3 s · 3 errors"},
		{"first sample spans nothing", frontend.HistoryPoint{At: at, Answers: 4}, 0, webCount{},
			"23:59:58 backlog 0 · workers 0 (want 0) · 0.0 answers/s, median 0 ms · 0 errors"},
		{"several web tiers, one down", frontend.HistoryPoint{At: at, Backlog: 3, Desired: 1, Running: 1, Answers: 20, Seconds: 2, P50Ms: 40}, 2, webCount{2, 3},
			"23:59:58 backlog 3 · workers 1 (want 1) · web tiers 2 of 3 up; one of them: 10.0 answers/s, median 40 ms, 2 errors"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := statusLine(c.p, c.errors, c.tiers); got != c.want {
				t.Fatalf("got  %q\nwant %q", got, c.want)
			}
		})
	}
}

func TestTruncate(t *testing.T) {
	for _, c := range []struct {
		s     string
		width int
		want  string
	}{
		{"backlog · 3", 20, "backlog · 3"},
		{"backlog · 3", 9, "backlog ·"},
		{"backlog · 3", 8, "backlog "},
		{"backlog", 0, "backlog"},
		{"backlog", -1, "backlog"},
	} {
		if got := truncate(c.s, c.width); got != c.want {
			t.Errorf("truncate(%q, %d) = %q, want %q", c.s, c.width, got, c.want)
		}
	}
}

// The first sample's errors came before the watch; later ones add up, and
// a sample seen twice counts once.
func TestStatusWatchCountsErrorsSinceItBegan(t *testing.T) {
	var w statusWatch
	w.add([]frontend.HistoryPoint{{At: 1000, Errors: 5}})
	w.add([]frontend.HistoryPoint{{At: 1000, Errors: 5}, {At: 3000, Errors: 2}, {At: 5000, Errors: 1, Backlog: 7}})
	if w.errors != 3 || w.since != 5000 || w.latest.Backlog != 7 {
		t.Fatalf("errors %d since %d latest %+v; want 3, 5000, backlog 7", w.errors, w.since, w.latest)
	}
}

// Logs written while the line is up go above it: the line is erased, the
// log written, the line drawn again.
func TestLogsGoAboveTheLine(t *testing.T) {
	var term, logs bytes.Buffer
	l := &liveStatus{out: &term}
	w := l.logs(&logs)
	w.Write([]byte("before\n"))
	l.draw("backlog 3")
	w.Write([]byte("during\n"))
	l.clear()
	w.Write([]byte("after\n"))
	if got, want := term.String(), clearLine+"backlog 3"+clearLine+"backlog 3"+clearLine; got != want {
		t.Errorf("terminal got %q, want %q", got, want)
	}
	if logs.String() != "before\nduring\nafter\n" {
		t.Errorf("logs got %q", logs.String())
	}
}

// Not a terminal: no line, logs straight to stderr.
func TestNoLineWithoutATerminal(t *testing.T) {
	out, err := os.CreateTemp(t.TempDir(), "stdout")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	l, logs := newLiveStatus(out, os.Stderr)
	if l != nil || logs != os.Stderr {
		t.Fatalf("a status line on a file: %v, logs to %v", l, logs)
	}
	l.start(context.Background(), "http://127.0.0.1:1", nil)() // a nil line starts and stops as nothing
}

// The line follows the web tier's history, and says so when it does not
// answer.
func TestLineFromTheWebTier(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/status/history" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(`{"interval_ms":2000,"points":[{"t":1000,"backlog":9,"desired":2,"running":1,"seconds":2}]}`))
	}))
	defer srv.Close()
	var w statusWatch
	if got := w.poll(context.Background(), srv.Client(), srv.URL); !strings.Contains(got, "backlog 9 · workers 1 (want 2)") {
		t.Errorf("line %q", got)
	}
	if got := w.poll(context.Background(), srv.Client(), srv.URL+"/gone"); !strings.HasPrefix(got, "web tier not answering: GET /status/history: 404") {
		t.Errorf("line %q", got)
	}
}
