package frontend_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/surgeml/surge/events"
	"github.com/surgeml/surge/internal/frontend"
	"github.com/surgeml/surge/internal/testenv"
)

// 5xx answers give a reason and the request id; the error itself, with the
// server's paths, goes to the log under that id.
func TestServerErrorsKeepDetailsInTheLog(t *testing.T) {
	var logs testenv.Buffer
	s := newSiteLogging(t, frontend.Config{}, slog.New(slog.NewTextHandler(&logs, nil)))
	// The input bucket's directory replaced by a file: storing fails with
	// an error that names a path on this machine.
	in := filepath.Join(s.dir, "in")
	if err := os.RemoveAll(in); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(in, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, accept := range []string{"text/plain", "application/json"} {
		r := upload(t, s.url, "inputFile", "dog.jpg", testenv.Photo(t, "dog.jpg"), "Accept", accept)
		id := r.header.Get("X-Request-Id")
		if r.status != 503 || r.header.Get("Retry-After") == "" || !strings.Contains(r.body, "storing the image") {
			t.Fatalf("%s: %d %q", accept, r.status, r.body)
		}
		if strings.Contains(r.body, s.dir) || !strings.Contains(r.body, id) {
			t.Errorf("%s: the answer shows a server path or lacks the id %s: %q", accept, id, r.body)
		}
		if countLines(logs.String(), "id="+id, s.dir) != 1 {
			t.Errorf("%s: the error with its path is not logged under id %s:\n%s", accept, id, logs.String())
		}
	}
}

// A worker's failure, fetched later, is shown without the worker's error.
func TestWorkerFailureHidesItsError(t *testing.T) {
	s := newSite(t, frontend.Config{ResultTimeout: 300 * time.Millisecond})
	r := upload(t, s.url, "inputFile", "eagle.jpg", testenv.Photo(t, "eagle.jpg"))
	id := r.header.Get("X-Request-Id")
	if r.status != 504 || !strings.Contains(r.body, "/results/"+id) {
		t.Fatalf("%d %q", r.status, r.body)
	}
	const secret = "/srv/secret/in/eagle.jpg"
	failed, err := events.EncodeResult(events.Result{V: events.Version, ID: id, Stem: "eagle",
		Error: &events.Error{Code: events.ErrFailed, Message: "gave up after 5 attempts: open " + secret + ": input/output error"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.responses.Send(context.Background(), failed); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "the failure is known", func() bool { return get(t, s.url+"/results/"+id).status != 202 })
	for _, accept := range []string{"text/plain", "application/json"} {
		f := get(t, s.url+"/results/"+id, "Accept", accept)
		if f.status != 503 || strings.Contains(f.body, secret) || !strings.Contains(f.body, id) || !strings.Contains(f.body, "eagle") {
			t.Errorf("%s: %d %q", accept, f.status, f.body)
		}
	}
}

// Answers that echo a client's file name must not be sniffed into HTML.
func TestAnswersAreNotSniffed(t *testing.T) {
	s := newSite(t, frontend.Config{})
	s.worker(t)
	eagle := testenv.Photo(t, "eagle.jpg")
	ok := upload(t, s.url, "inputFile", "<b>eagle.jpg", eagle)
	for what, r := range map[string]reply{
		"text answer":    ok,
		"JSON answer":    upload(t, s.url, "inputFile", "<b>eagle.jpg", eagle, "Accept", "application/json"),
		"error":          upload(t, s.url, "inputFile", "<b>notes.jpg", []byte("<html>")),
		"JSON error":     upload(t, s.url, "inputFile", "<b>notes.jpg", []byte("<html>"), "Accept", "application/json"),
		"fetched answer": get(t, s.url+"/results/"+ok.header.Get("X-Request-Id")),
		"unknown result": get(t, s.url+"/results/<b>"),
		"status":         get(t, s.url+"/status"),
		"health":         get(t, s.url+"/healthz"),
		"form":           get(t, s.url+"/"),
	} {
		if got := r.header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("%s (%d): X-Content-Type-Options %q", what, r.status, got)
		}
	}
}

// GET /results/{id} takes ids of the form uploads are given, and answers
// anything else shortly, without echoing it (issue 23, defect 7: a 900 KB
// id came back as a 900 KB header and a 1.8 MB body).
func TestResultIDs(t *testing.T) {
	s := newSite(t, frontend.Config{})
	const unknown = "0b6f2d1e-5c3a-4f4e-9a1b-2c3d4e5f6a7b"
	for _, c := range []struct {
		id     string
		status int
	}{
		{strings.Repeat("a", 900<<10), 400},
		{"<b>", 400},
		{strings.ToUpper(unknown), 400},
		{"{" + unknown + "}", 400},
		{unknown, 404},
	} {
		r := get(t, s.url+"/results/"+c.id)
		echoed := r.header.Get("X-Request-Id")
		if r.status != c.status || len(r.body) > 200 || (c.status == 400 && echoed != "") || (c.status == 404 && echoed != c.id) {
			t.Errorf("%.40q: %d, %d bytes, X-Request-Id %.40q; want %d, a short body, the id echoed only if it is one", c.id, r.status, len(r.body), echoed, c.status)
		}
	}
}

// Readiness fails, with its reason, while uploads cannot be stored, and
// liveness does not (issue 23, defect 10: /healthz answered 200 while the
// disk was full and every upload got 503).
func TestReadiness(t *testing.T) {
	// A site of its own in a subtest: newSite may mark its test parallel,
	// which a test can be only once.
	t.Run("no disk big enough", func(t *testing.T) {
		full := newSite(t, frontend.Config{MinFreeBytes: 1 << 62})
		for path, want := range map[string]int{"/readyz": 503, "/healthz": 503, "/livez": 200} {
			if r := get(t, full.url+path); r.status != want || (want == 503 && !strings.Contains(r.body, "KB free")) {
				t.Errorf("%s: %d %q, want %d", path, r.status, r.body, want)
			}
		}
	})

	s := newSite(t, frontend.Config{ReadyHold: time.Second})
	s.worker(t)
	if r := get(t, s.url+"/readyz"); r.status != 200 {
		t.Fatalf("/readyz at the start: %d %q", r.status, r.body)
	}
	// The input bucket's directory replaced by a file: every store fails,
	// for real.
	in := filepath.Join(s.dir, "in")
	if err := os.RemoveAll(in); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(in, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	dog := testenv.Photo(t, "dog.jpg")
	if r := upload(t, s.url, "inputFile", "dog.jpg", dog); r.status != 503 {
		t.Fatalf("upload with the bucket unwritable: %d %q", r.status, r.body)
	}
	if r := get(t, s.url+"/readyz"); r.status != 503 || !strings.Contains(r.body, "storing an upload failed") || strings.Contains(r.body, s.dir) {
		t.Errorf("/readyz after a failed store: %d %q, want 503 saying why, without paths", r.status, r.body)
	}
	if r := get(t, s.url+"/livez"); r.status != 200 {
		t.Errorf("/livez after a failed store: %d", r.status)
	}
	os.Remove(in)
	if err := os.Mkdir(in, 0o750); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 5*time.Second, "ready again after the hold", func() bool { return get(t, s.url+"/readyz").status == 200 })
	if r := upload(t, s.url, "inputFile", "dog.jpg", dog); r.status != 200 {
		t.Errorf("upload once ready again: %d %q", r.status, r.body)
	}
}
