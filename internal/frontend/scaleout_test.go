package frontend_test

import (
	"bytes"
	"context"
	"encoding/json"
	"image"
	"log/slog"
	"mime/multipart"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/surgeml/surge/events"
	"github.com/surgeml/surge/internal/embedded"
	"github.com/surgeml/surge/internal/frontend"
	"github.com/surgeml/surge/internal/labeling"
	"github.com/surgeml/surge/internal/testenv"
)

// countingRecognizer counts the inferences a worker runs.
type countingRecognizer struct {
	labeling.Recognizer
	n atomic.Int64
}

func (c *countingRecognizer) Recognize(img image.Image) (string, float64, error) {
	c.n.Add(1)
	return c.Recognizer.Recognize(img)
}

// newScaleOut is n web tiers on one set of embedded backends, each with
// a reply queue of its own (what -instance-id gives a web tier), as
// several instances behind a load balancer are; the worker, once started
// (sites[0].worker), answers to their queues.
func newScaleOut(t *testing.T, n int) []*site {
	t.Helper()
	base := newSite(t, frontend.Config{})
	base.stop() // its server reads the shared queue as a lone web tier does
	names := events.NamesFor("x")
	base.replies = embedded.NewReplyQueues(base.dir, names)
	t.Cleanup(func() { base.replies.Close() })
	sites := []*site{base}
	for i := range n {
		s := base
		if i > 0 {
			copied := *base
			s = &copied
			sites = append(sites, s)
		}
		id := string(rune('a' + i))
		q, err := base.replies.Create(context.Background(), names.ReplyQueue(id))
		if err != nil {
			t.Fatal(err)
		}
		// A result that went astray fails the test in seconds, not minutes.
		s.srv = frontend.New(frontend.Config{ResultTimeout: 20 * time.Second}, frontend.Backends{
			Requests: base.requests, Responses: base.responses, Inputs: base.inputs,
			Fleet: embedded.NewFleetReader(filepath.Join(base.dir, "fleet")), Answers: base.table, AnswersName: "x-dynamoDB",
			Replies: q, ReplyTo: names.ReplyQueue(id), Others: base.replies, Records: base.table,
		}, slog.New(slog.DiscardHandler))
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		s.url = "http://" + ln.Addr().String()
		ctx, cancel := context.WithCancel(context.Background())
		served := make(chan error, 1)
		go func() { served <- s.srv.Serve(ctx, ln) }()
		s.stop = func() error { cancel(); return <-served }
		t.Cleanup(func() { cancel() })
	}
	return sites
}

// Several web tiers, each reading its own reply queue: each gets its own
// answers, any of them answers GET /results/{id}, a result that reached
// the shared queue is passed on to its tier, and an upload sent again to
// another tier while the first is still being answered waits for that
// answer instead of costing a second inference.
func TestScaleOut(t *testing.T) {
	sites := newScaleOut(t, 2)
	a, b := sites[0], sites[1]
	stopWorker := a.worker(t)
	dog, eagle := testenv.Photo(t, "dog.jpg"), testenv.Photo(t, "eagle.jpg")

	r := upload(t, a.url, "inputFile", "dog.jpg", dog)
	if r.status != 200 || !strings.HasPrefix(r.body, "dog:") {
		t.Fatalf("upload to the first tier: %d %q", r.status, r.body)
	}
	label := strings.TrimPrefix(r.body, "dog:")
	if got := get(t, b.url+"/results/"+r.header.Get("X-Request-Id")); got.status != 200 || got.body != r.body {
		t.Errorf("GET /results/{id} on the other tier: %d %q, want %q", got.status, got.body, r.body)
	}
	if c, _ := a.responses.Counts(context.Background()); c.Backlog() != 0 {
		t.Errorf("shared response queue: %+v, want nothing: answers go to each tier's own queue", c)
	}
	var st frontend.Status
	if r := get(t, b.url+"/status"); r.status != 200 || json.Unmarshal([]byte(r.body), &st) != nil || st.ReplyQueue == nil || st.ReplyQueue.Name != "x-resp-b" {
		t.Errorf("/status of the second tier: %d %s, want its reply queue x-resp-b", r.status, r.body)
	}

	// With the worker stopped, a client cut off while waiting, then the
	// same upload to the other tier: that waits for the first's answer.
	stopWorker()
	ctx, cut := context.WithCancel(context.Background())
	go func() {
		req := uploadRequest(t, a.url, "eagle.jpg", eagle).WithContext(ctx)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	waitUntil(t, 5*time.Second, "the first upload queued and marked", func() bool {
		c, _ := a.requests.Counts(context.Background())
		it, err := a.table.Get(context.Background(), "eagle.jpg")
		return c.Visible == 1 && err == nil && it.Label == "" && it.SHA256 != ""
	})
	cut()
	retried := make(chan reply, 1)
	go func() { retried <- upload(t, b.url, "inputFile", "eagle.jpg", eagle, "Accept", "application/json") }()
	time.Sleep(500 * time.Millisecond) // the retry is waiting before any answer exists
	stopWorker = a.worker(t)           // counting inferences from 0
	got := <-retried
	var answer struct {
		Label  string `json:"label"`
		Cached bool   `json:"cached"`
	}
	if err := json.Unmarshal([]byte(got.body), &answer); got.status != 200 || err != nil || !answer.Cached || answer.Label == "" {
		t.Fatalf("upload sent again to the other tier: %d %q, want an answer from the table", got.status, got.body)
	}
	waitUntil(t, 5*time.Second, "the queue empty", func() bool {
		c, _ := a.requests.Counts(context.Background())
		return c.Backlog() == 0
	})
	if n := a.recognised.n.Load(); n != 1 {
		t.Errorf("%d inferences for an upload sent twice, want 1", n)
	}

	// A result for the first tier on the shared queue, as a worker sends
	// it when the tier's queue looked gone: it still reaches its upload,
	// through whichever tier takes it.
	stopWorker()
	pending := make(chan reply, 1)
	go func() { pending <- upload(t, a.url, "inputFile", "dog2.jpg", dog) }()
	var req events.Request
	waitUntil(t, 5*time.Second, "a request to answer by hand", func() bool {
		msgs, _ := a.requests.Receive(context.Background(), 1, 0)
		if len(msgs) == 0 {
			return false
		}
		req, _ = events.DecodeRequest(msgs[0].Body)
		a.requests.Delete(context.Background(), msgs[0].Receipt)
		return true
	})
	{
		body, err := events.EncodeResult(events.Result{V: events.Version, ID: req.ID, Stem: req.Stem, Label: label, ReplyTo: req.ReplyTo})
		if err != nil {
			t.Fatal(err)
		}
		if err := a.responses.Send(context.Background(), body); err != nil {
			t.Fatal(err)
		}
	}
	if r := <-pending; r.status != 200 || r.body != "dog2:"+label {
		t.Errorf("upload answered through the shared queue: %d %q", r.status, r.body)
	}
}

// uploadRequest is upload's request, to send with a context of one's own.
func uploadRequest(t *testing.T, url, name string, data []byte) *http.Request {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, err := mw.CreateFormFile("inputFile", name)
	if err != nil {
		t.Fatal(err)
	}
	fw.Write(data)
	mw.Close()
	req, err := http.NewRequest(http.MethodPost, url+"/", &body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	return req
}
