package frontend_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"image"
	"image/png"
	"io"
	"log/slog"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/surgeml/surge/internal/embedded"
	"github.com/surgeml/surge/internal/frontend"
	"github.com/surgeml/surge/internal/labeling"
	"github.com/surgeml/surge/internal/recognize"
	"github.com/surgeml/surge/internal/testenv"
)

// site is a web tier on a real socket over the embedded backends, with an
// optional in-process worker running the real model (a fake under -short).
type site struct {
	url                 string
	dir                 string
	requests, responses *embedded.Queue
	inputs, outputs     *embedded.Bucket
	table               *embedded.Table
	srv                 *frontend.Server
	stop                func() error
	// replies, when set, are the reply queues of web tiers that are one
	// of several (newScaleOut); the worker answers to them.
	replies *embedded.ReplyQueues
	// recognised counts the worker's inferences.
	recognised *countingRecognizer
}

func newSite(t *testing.T, cfg frontend.Config) *site {
	t.Helper()
	return newSiteLogging(t, cfg, slog.New(slog.DiscardHandler))
}

func newSiteLogging(t *testing.T, cfg frontend.Config, log *slog.Logger) *site {
	t.Helper()
	return newSiteQueue(t, cfg, embedded.QueueOptions{}, log)
}

// newSiteQueue is a site whose request queue has the given options. Under
// -short the test runs in parallel with the others (testenv.Parallel).
func newSiteQueue(t *testing.T, cfg frontend.Config, opts embedded.QueueOptions, log *slog.Logger) *site {
	t.Helper()
	testenv.Parallel(t)
	ctx := context.Background()
	s := &site{dir: t.TempDir()}
	var err error
	if s.table, err = embedded.OpenTable(ctx, s.dir, "x-dynamoDB"); err != nil {
		t.Fatal(err)
	}
	if s.requests, err = embedded.OpenQueue(ctx, s.dir, "req", opts); err != nil {
		t.Fatal(err)
	}
	if s.responses, err = embedded.OpenQueue(ctx, s.dir, "resp", embedded.QueueOptions{}); err != nil {
		t.Fatal(err)
	}
	if s.inputs, err = embedded.OpenBucket(filepath.Join(s.dir, "in")); err != nil {
		t.Fatal(err)
	}
	if s.outputs, err = embedded.OpenBucket(filepath.Join(s.dir, "out")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.requests.Close(); s.responses.Close(); s.table.Close() })
	s.serve(t, cfg, log, frontend.Handover{})
	return s
}

// serve starts a web tier on the site's backends, taking over h.
func (s *site) serve(t *testing.T, cfg frontend.Config, log *slog.Logger, h frontend.Handover) {
	t.Helper()
	s.srv = frontend.New(cfg, frontend.Backends{
		Requests: s.requests, Responses: s.responses, Inputs: s.inputs,
		Fleet: embedded.NewFleetReader(filepath.Join(s.dir, "fleet")), DeadLetters: s.requests.DeadLetters(),
		Answers: s.table, AnswersName: "x-dynamoDB",
	}, log)
	s.srv.TakeOver(h)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.url = "http://" + ln.Addr().String()
	sctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.srv.Serve(sctx, ln) }()
	var once sync.Once
	var serveErr error
	s.stop = func() error {
		once.Do(func() { cancel(); serveErr = <-served })
		return serveErr
	}
	t.Cleanup(func() { s.stop() })
}

// worker starts the app tier with the real model, or under -short with
// the FakeRecognizer that labels testenv.Photo's stand-ins; the returned
// func stops it.
func (s *site) worker(t *testing.T) func() {
	t.Helper()
	var r labeling.Recognizer = testenv.FakeRecognizer{}
	release := func() {}
	if !testing.Short() {
		c, err := recognize.NewClassifier(testenv.Runtime(t), testenv.Model(t), 1)
		if err != nil {
			t.Fatal(err)
		}
		r, release = c, func() { c.Close() }
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.recognised = &countingRecognizer{Recognizer: r}
	w := labeling.New(labeling.Config{Wait: time.Second, Concurrency: 2}, s.requests, s.responses, s.inputs, s.outputs, s.table, s.recognised, slog.New(slog.DiscardHandler))
	if s.replies != nil {
		w.WithReplies(s.replies)
	}
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done; release() }) }
	t.Cleanup(stop)
	return stop
}

type reply struct {
	status int
	body   string
	header http.Header
}

func upload(t *testing.T, url, field, name string, data []byte, header ...string) reply {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, err := mw.CreateFormFile(field, name)
	if err != nil {
		t.Fatal(err)
	}
	fw.Write(data)
	mw.Close()
	return post(t, url, mw.FormDataContentType(), body.Bytes(), header...)
}

func post(t *testing.T, url, contentType string, body []byte, header ...string) reply {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url+"/", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return do(t, req)
}

func get(t *testing.T, url string, header ...string) reply {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return do(t, req)
}

func do(t *testing.T, req *http.Request) reply {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{resp.StatusCode, string(b), resp.Header}
}

func TestAnswersInTheCourseFormat(t *testing.T) {
	s := newSite(t, frontend.Config{})
	s.worker(t)
	for _, field := range []string{"inputFile", "myfile"} {
		r := upload(t, s.url, field, "eagle.jpg", testenv.Photo(t, "eagle.jpg"))
		// Byte-exact: no trailing newline, text/plain.
		if r.status != 200 || r.body != "eagle:bald eagle" || !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") {
			t.Errorf("%s: %d %q (%s)", field, r.status, r.body, r.header.Get("Content-Type"))
		}
		if r.header.Get("X-Request-Id") == "" {
			t.Errorf("%s: no X-Request-Id", field)
		}
	}
	// The image is in the input bucket under its name, the label in the
	// output bucket under its stem.
	if in, err := s.inputs.Get(context.Background(), "eagle.jpg"); err != nil || !bytes.Equal(in, testenv.Photo(t, "eagle.jpg")) {
		t.Errorf("input bucket: %d bytes, %v", len(in), err)
	}
	if out, err := s.outputs.Get(context.Background(), "eagle"); err != nil || string(out) != "bald eagle" {
		t.Errorf("output bucket: %q, %v", out, err)
	}
}

func TestJSONOnRequest(t *testing.T) {
	s := newSite(t, frontend.Config{})
	s.worker(t)
	r := upload(t, s.url, "inputFile", "dog.jpg", testenv.Photo(t, "dog.jpg"), "Accept", "application/json")
	var res struct {
		ID, Stem, Label, Model string
		Score                  float64
	}
	if err := json.Unmarshal([]byte(r.body), &res); err != nil || r.status != 200 {
		t.Fatalf("%d %s: %v", r.status, r.body, err)
	}
	if res.Stem != "dog" || res.Label != "Alaskan Malamute" || res.Score <= 0 || res.ID != r.header.Get("X-Request-Id") {
		t.Fatalf("JSON result %+v", res)
	}
}

// pixelBomb is a valid PNG header declaring w×h pixels.
func pixelBomb(t *testing.T, w, h uint32) []byte {
	var buf bytes.Buffer
	png.Encode(&buf, image.NewGray(image.Rect(0, 0, 1, 1)))
	data := buf.Bytes()
	binary.BigEndian.PutUint32(data[16:], w)
	binary.BigEndian.PutUint32(data[20:], h)
	binary.BigEndian.PutUint32(data[29:], crc32.ChecksumIEEE(data[12:29]))
	return data
}

// progressiveHeader is the headers of a w×h progressive JPEG, up to its
// first scan.
func progressiveHeader(t *testing.T, w, h int) []byte {
	var buf bytes.Buffer
	if err := testenv.ProgressiveJPEG(&buf, w, h, func(c, bx, by int) uint8 { return 128 }); err != nil {
		t.Fatal(err)
	}
	data := buf.Bytes()
	return data[:bytes.Index(data, []byte{0xff, 0xda})]
}

// rawForm is a multipart body, boundary B, of one part with the given
// Content-Disposition, written as is.
func rawForm(disposition string, data []byte) []byte {
	var b bytes.Buffer
	b.WriteString("--B\r\nContent-Disposition: " + disposition + "\r\nContent-Type: image/jpeg\r\n\r\n")
	b.Write(data)
	b.WriteString("\r\n--B--\r\n")
	return b.Bytes()
}

// http10Chunked posts body as HTTP/1.0 with a chunked transfer encoding,
// which HTTP/1.0 does not have, and returns the status and body.
func http10Chunked(t *testing.T, url string, body []byte) reply {
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST / HTTP/1.0\r\nContent-Type: multipart/form-data; boundary=B\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", len(body), body)
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return reply{status: res.StatusCode, body: string(b), header: res.Header}
}

func TestBadInput(t *testing.T) {
	s := newSite(t, frontend.Config{MaxUpload: 200 << 10})
	s.worker(t)
	dog := testenv.Photo(t, "dog.jpg")
	for _, c := range []struct {
		name   string
		send   func() reply
		status int
		reason string
	}{
		{"not multipart", func() reply { return post(t, s.url, "text/plain", []byte("hello")) }, 400, "no file"},
		{"no file field", func() reply { return upload(t, s.url, "photo", "a.jpg", dog) }, 400, "no file"},
		{"empty file", func() reply { return upload(t, s.url, "inputFile", "a.jpg", nil) }, 400, "empty"},
		{"no file name", func() reply { return upload(t, s.url, "inputFile", "", dog) }, 400, "no file name"},
		{"text", func() reply { return upload(t, s.url, "inputFile", "notes.jpg", []byte("just words")) }, 400, "not an image"},
		{"html", func() reply { return upload(t, s.url, "inputFile", "x.jpg", []byte("<html></html>")) }, 400, "not an image"},
		{"over the size limit", func() reply { return upload(t, s.url, "inputFile", "kite.jpg", testenv.Photo(t, "kite.jpg")) }, 413, "limit"},
		{"pixel bomb", func() reply { return upload(t, s.url, "inputFile", "bomb.png", pixelBomb(t, 100000, 100000)) }, 413, "too many pixels"},
		// Under the pixel limit, but image/jpeg would keep 706 MB of
		// coefficients: refused from the header, which is all it sends.
		{"progressive JPEG too large to decode", func() reply {
			return upload(t, s.url, "inputFile", "big.jpg", progressiveHeader(t, 7000, 7000))
		}, 413, "7000×7000, a progressive 4:4:4 JPEG, takes 706 MB to decode, over the limit of 100 MB"},
		{"truncated", func() reply { return upload(t, s.url, "inputFile", "cut.jpg", dog[:len(dog)/2]) }, 422, "corrupt"},
		// Issue 23, defect 9: each was answered "the form has no
		// "inputFile" field", or with an empty stem.
		{"unescaped quote in the file name", func() reply {
			return post(t, s.url, "multipart/form-data; boundary=B", rawForm(`form-data; name="inputFile"; filename="a"b.jpg"`, dog))
		}, 400, "Content-Disposition cannot be read"},
		{"line break in filename*", func() reply {
			return post(t, s.url, "multipart/form-data; boundary=B", rawForm(`form-data; name="inputFile"; filename*=UTF-8''a%0D%0A.jpg`, dog))
		}, 400, "control characters"},
		{"file name /", func() reply { return upload(t, s.url, "inputFile", "/", dog) }, 400, "names no file"},
		{"HTTP/1.0 chunked", func() reply {
			return http10Chunked(t, s.url, rawForm(`form-data; name="inputFile"; filename="dog.jpg"`, dog))
		}, 400, "HTTP/1.0"},
		{"name too long to queue", func() reply {
			return upload(t, s.url, "inputFile", strings.Repeat(`"`, 240)+".jpg", dog)
		}, 400, "too long"},
	} {
		r := c.send()
		if r.status != c.status || !strings.Contains(r.body, c.reason) {
			t.Errorf("%s: %d %q, want %d mentioning %q", c.name, r.status, r.body, c.status, c.reason)
		}
	}
	// The worker survived all of it.
	if r := upload(t, s.url, "inputFile", "dog.jpg", dog); r.status != 200 || r.body != "dog:Alaskan Malamute" {
		t.Fatalf("after bad input: %d %q", r.status, r.body)
	}
}

func TestOddFileNames(t *testing.T) {
	s := newSite(t, frontend.Config{})
	s.worker(t)
	eagle := testenv.Photo(t, "eagle.jpg")
	for name, want := range map[string]struct{ answer, key string }{
		"../../etc/passwd.jpg":   {"passwd:bald eagle", "passwd.jpg"},
		`C:\photos\bird.JPEG`:    {"bird:bald eagle", "bird.JPEG"},
		"my bird (1).jpg":        {"my bird (1):bald eagle", "my bird (1).jpg"},
		"ünïcødé.jpg":            {"ünïcødé:bald eagle", "ünïcødé.jpg"},
		".hidden.jpg":            {".hidden:bald eagle", "hidden.jpg"},
		"img.2024.06.jpg":        {"img:bald eagle", "img.2024.06.jpg"},
		"semi;colon&amp<b>.jpeg": {"semi;colon&amp<b>:bald eagle", "semi_colon_amp_b_.jpeg"},
	} {
		r := upload(t, s.url, "inputFile", name, eagle)
		if r.status != 200 || r.body != want.answer {
			t.Errorf("%q: %d %q, want %q", name, r.status, r.body, want.answer)
		}
		if _, err := s.inputs.Get(context.Background(), want.key); err != nil {
			t.Errorf("%q: not stored as %q: %v", name, want.key, err)
		}
	}
	if _, err := os.Stat(filepath.Join(s.dir, "etc")); err == nil {
		t.Error("a path in a file name escaped the bucket")
	}
}

// Two uploads with the same name but different pictures, at once: each
// gets the answer for its own picture.
func TestSameNameDifferentImages(t *testing.T) {
	s := newSite(t, frontend.Config{})
	s.worker(t)
	want := map[string]string{"dog.jpg": "photo:Alaskan Malamute", "eagle.jpg": "photo:bald eagle"}
	var wg sync.WaitGroup
	errs := make(chan string, 40)
	for i := range 20 {
		src := []string{"dog.jpg", "eagle.jpg"}[i%2]
		data := testenv.Photo(t, src)
		wg.Go(func() {
			if r := upload(t, s.url, "inputFile", "photo.jpg", data); r.status != 200 || r.body != want[src] {
				errs <- fmt.Sprintf("%s as photo.jpg: %d %q", src, r.status, r.body)
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func TestQueueDownIs503(t *testing.T) {
	s := newSite(t, frontend.Config{})
	s.requests.Close()
	r := upload(t, s.url, "inputFile", "dog.jpg", testenv.Photo(t, "dog.jpg"))
	if r.status != 503 || r.header.Get("Retry-After") == "" || !strings.Contains(r.body, "queue") {
		t.Fatalf("%d %q (Retry-After %q)", r.status, r.body, r.header.Get("Retry-After"))
	}
	if r := get(t, s.url+"/healthz"); r.status != 503 {
		t.Fatalf("healthz with the queue down: %d", r.status)
	}
}

// With no worker the upload times out with its id; the result can be
// fetched once a worker comes.
func TestTimeoutThenFetch(t *testing.T) {
	s := newSite(t, frontend.Config{ResultTimeout: 500 * time.Millisecond})
	r := upload(t, s.url, "inputFile", "eagle.jpg", testenv.Photo(t, "eagle.jpg"))
	id := r.header.Get("X-Request-Id")
	if r.status != 504 || id == "" || !strings.Contains(r.body, "/results/"+id) {
		t.Fatalf("%d %q", r.status, r.body)
	}
	if p := get(t, s.url+"/results/"+id); p.status != 202 {
		t.Fatalf("pending result: %d %q", p.status, p.body)
	}
	s.worker(t)
	var got reply
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if got = get(t, s.url+"/results/"+id); got.status != 202 {
			break
		}
	}
	if got.status != 200 || got.body != "eagle:bald eagle" {
		t.Fatalf("fetched result: %d %q", got.status, got.body)
	}
	if r := get(t, s.url+"/results/"+uuid.NewString()); r.status != 404 {
		t.Fatalf("unknown id: %d", r.status)
	}
}

func TestStatusAndHealth(t *testing.T) {
	s := newSite(t, frontend.Config{MaxWorkers: 7})
	if r := get(t, s.url+"/healthz"); r.status != 200 {
		t.Fatalf("healthz: %d %q", r.status, r.body)
	}
	for range 12 {
		s.requests.Send(context.Background(), []byte("{}"))
	}
	r := get(t, s.url+"/status")
	var st frontend.Status
	if err := json.Unmarshal([]byte(r.body), &st); err != nil {
		t.Fatalf("%d %s: %v", r.status, r.body, err)
	}
	if st.RequestQueue.Visible != 12 || st.Fleet.Desired != 2 || st.Fleet.Max != 7 || st.Fleet.Running != 0 {
		t.Fatalf("status %+v", st)
	}
	if r := get(t, s.url+"/"); r.status != 200 || !strings.Contains(r.body, `name="inputFile"`) {
		t.Fatalf("upload page: %d", r.status)
	}
}

// Shutdown lets an upload in progress get its answer.
func TestGracefulShutdown(t *testing.T) {
	s := newSite(t, frontend.Config{})
	answered := make(chan reply, 1)
	go func() { answered <- upload(t, s.url, "inputFile", "dog.jpg", testenv.Photo(t, "dog.jpg")) }()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if c, _ := s.requests.Counts(context.Background()); c.Visible == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("upload never queued")
		}
	}
	stopped := make(chan error, 1)
	go func() { stopped <- s.stop() }()
	time.Sleep(200 * time.Millisecond)
	s.worker(t)
	if r := <-answered; r.status != 200 || r.body != "dog:Alaskan Malamute" {
		t.Fatalf("upload during shutdown: %d %q", r.status, r.body)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if _, err := net.DialTimeout("tcp", strings.TrimPrefix(s.url, "http://"), time.Second); err == nil {
		t.Fatal("still accepting connections after shutdown")
	}
}

// A request whose worker dies on every delivery ends in the dead-letter
// queue. The waiting upload is told so at once, not after the result
// timeout; GET /results/{id} and /status say so too.
func TestDeadLetteredRequestFailsAtOnce(t *testing.T) {
	opts := embedded.QueueOptions{Visibility: 300 * time.Millisecond, MaxReceives: 2}
	s := newSiteQueue(t, frontend.Config{ResultTimeout: 20 * time.Second}, opts, slog.New(slog.DiscardHandler))
	// A stand-in for a worker process that crashes on this request each
	// time: it takes every delivery and never answers, extends or deletes
	// it.
	crashing, err := embedded.OpenQueue(context.Background(), s.dir, "req", opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { crashing.Close() })
	delivered := make(chan int, 1)
	go func() {
		n := 0
		for n < opts.MaxReceives {
			msgs, err := crashing.Receive(context.Background(), 1, 5*time.Second)
			if err != nil {
				break
			}
			n += len(msgs)
		}
		delivered <- n
	}()

	start := time.Now()
	r := upload(t, s.url, "inputFile", "eagle.jpg", testenv.Photo(t, "eagle.jpg"), "Accept", "application/json")
	id := r.header.Get("X-Request-Id")
	var body struct{ ID, Code, Error string }
	json.Unmarshal([]byte(r.body), &body)
	if r.status != 500 || body.Code != "dead_lettered" || body.ID != id || !strings.Contains(body.Error, "dead-letter") {
		t.Fatalf("upload of a request dead-lettered: %d %q after %v, want 500 with code dead_lettered",
			r.status, r.body, time.Since(start).Round(time.Millisecond))
	}
	t.Logf("dead-lettered upload answered after %v", time.Since(start).Round(time.Millisecond))
	if n := <-delivered; n != opts.MaxReceives {
		t.Fatalf("the crashing worker got %d deliveries, want %d", n, opts.MaxReceives)
	}

	text := get(t, s.url+"/results/"+id)
	if text.status != 500 || !strings.Contains(text.body, "dead_lettered") || !strings.Contains(text.body, "eagle") {
		t.Fatalf("GET /results/%s: %d %q", id, text.status, text.body)
	}
	js := get(t, s.url+"/results/"+id, "Accept", "application/json")
	json.Unmarshal([]byte(js.body), &body)
	if js.status != 500 || body.Code != "dead_lettered" || body.ID != id {
		t.Fatalf("GET /results/%s as JSON: %d %q", id, js.status, js.body)
	}
	var st frontend.Status
	if err := json.Unmarshal([]byte(get(t, s.url+"/status").body), &st); err != nil || st.DeadLetters.Backlog() != 1 {
		t.Fatalf("/status dead_letters %+v, %v", st.DeadLetters, err)
	}
}

// A request dead-lettered after its upload gave up waiting (504) shows as
// failed in GET /results/{id} within seconds, where it used to stay
// "pending" for good.
func TestDeadLetteredAfterTimeoutShowsInResults(t *testing.T) {
	opts := embedded.QueueOptions{Visibility: 200 * time.Millisecond, MaxReceives: 1}
	s := newSiteQueue(t, frontend.Config{ResultTimeout: 100 * time.Millisecond}, opts, slog.New(slog.DiscardHandler))
	r := upload(t, s.url, "inputFile", "dog.jpg", testenv.Photo(t, "dog.jpg"))
	id := r.header.Get("X-Request-Id")
	if r.status != 504 {
		t.Fatalf("upload with no worker: %d %q", r.status, r.body)
	}
	// The stand-in crashing worker takes the one delivery allowed.
	if msgs, err := s.requests.Receive(context.Background(), 1, 5*time.Second); err != nil || len(msgs) != 1 {
		t.Fatalf("receiving the request: %d, %v", len(msgs), err)
	}
	var got reply
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if got = get(t, s.url+"/results/"+id); got.status != 202 {
			break
		}
	}
	if got.status != 500 || !strings.Contains(got.body, "dead_lettered") {
		t.Fatalf("GET /results/%s 5s after its last delivery timed out: %d %q", id, got.status, got.body)
	}
}

// tryUpload is upload for goroutines: a failed exchange is returned, not
// fatal.
func tryUpload(url, name string, data []byte) (reply, error) {
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, err := mw.CreateFormFile("inputFile", name)
	if err != nil {
		return reply{}, err
	}
	fw.Write(data)
	mw.Close()
	resp, err := http.Post(url+"/", mw.FormDataContentType(), &body)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, string(b), resp.Header}, err
}

// Stopping with uploads still waiting when the drain timeout ends: each is
// answered 503 with its id, Retry-After and where to fetch its result,
// never cut off; Serve reports the unclean stop. The results, answered
// later, are left for the next web tier, which knows the ids from the
// handover (202, not 404) and then answers them.
func TestDrainTimeoutAnswersOpenUploads(t *testing.T) {
	cfg := frontend.Config{DrainTimeout: 500 * time.Millisecond}
	s := newSite(t, cfg)
	const n = 3
	replies := make(chan reply, n)
	for i := range n {
		go func() {
			r, err := tryUpload(s.url, fmt.Sprintf("eagle-%d.jpg", i), testenv.Photo(t, "eagle.jpg"))
			if err != nil {
				r.body = err.Error()
			}
			replies <- r
		}()
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if c, _ := s.requests.Counts(context.Background()); c.Visible == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("uploads never queued")
		}
	}
	err := s.stop()
	var ids []string
	for range n {
		r := <-replies
		id := r.header.Get("X-Request-Id")
		if r.status != 503 || id == "" || !strings.Contains(r.body, "/results/"+id) || r.header.Get("Retry-After") == "" {
			t.Fatalf("upload open at the end of the drain: %d %q (Retry-After %q)", r.status, r.body, r.header.Get("Retry-After"))
		}
		ids = append(ids, id)
	}
	if err == nil || !strings.Contains(err.Error(), "3 ") {
		t.Errorf("Serve after a drain that timed out: %v, want an error counting the 3 open requests", err)
	}

	h := s.srv.Handover()
	path := filepath.Join(t.TempDir(), "handover.json")
	if err := frontend.WriteHandover(path, h); err != nil {
		t.Fatal(err)
	}
	s.worker(t)
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, _ := s.responses.Counts(context.Background()); c.Visible == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the results did not stay in the response queue")
		}
	}
	read, err := frontend.ReadHandover(path)
	if err != nil {
		t.Fatal(err)
	}
	s.serve(t, cfg, slog.New(slog.DiscardHandler), read)
	for _, id := range ids {
		var r reply
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if r = get(t, s.url+"/results/"+id); r.status != 202 {
				break
			}
		}
		if r.status != 200 || !strings.HasSuffix(r.body, ":bald eagle") {
			t.Errorf("GET /results/%s from the next web tier: %d %q", id, r.status, r.body)
		}
	}
}

// The handover carries what GET /results/{id} needs across a restart:
// requests still pending, and answers no upload was waiting for; neither
// answers already given to their uploads nor jobs older than ResultsTTL.
func TestHandoverAcrossRestart(t *testing.T) {
	discard := slog.New(slog.DiscardHandler)
	s := newSite(t, frontend.Config{})
	eagle, dog := testenv.Photo(t, "eagle.jpg"), testenv.Photo(t, "dog.jpg")
	stopWorker := s.worker(t)
	answered := upload(t, s.url, "inputFile", "dog.jpg", dog)
	if answered.status != 200 {
		t.Fatalf("upload with a worker: %d %q", answered.status, answered.body)
	}
	stopWorker()
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	if h := s.srv.Handover(); len(h.Jobs) != 0 {
		t.Fatalf("handover after every upload got its answer: %+v", h)
	}

	// Uploads with no worker to answer them give up waiting at once.
	cfg := frontend.Config{ResultTimeout: 100 * time.Millisecond}
	s.serve(t, cfg, discard, frontend.Handover{})
	late := upload(t, s.url, "inputFile", "eagle.jpg", eagle)
	if late.status != 504 {
		t.Fatalf("upload with no worker: %d %q", late.status, late.body)
	}
	stopWorker = s.worker(t)
	lateID, answeredID := late.header.Get("X-Request-Id"), answered.header.Get("X-Request-Id")
	for deadline := time.Now().Add(10 * time.Second); get(t, s.url+"/results/"+lateID).status != 200; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the late request was never answered")
		}
	}
	stopWorker()
	pending := upload(t, s.url, "inputFile", "dog-2.jpg", dog)
	pendingID := pending.header.Get("X-Request-Id")
	if pending.status != 504 {
		t.Fatalf("upload with the worker stopped: %d %q", pending.status, pending.body)
	}
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	h := s.srv.Handover()
	const expiredID = "6f1d2c3b-4a59-4e68-8d7c-0b1a2f3e4d5c"
	h.Jobs = append(h.Jobs, frontend.HandedJob{ID: expiredID, Stem: "old", Since: time.Now().Add(-2 * time.Hour)})
	path := filepath.Join(t.TempDir(), "handover.json")
	if err := frontend.WriteHandover(path, h); err != nil {
		t.Fatal(err)
	}
	read, err := frontend.ReadHandover(path)
	if err != nil {
		t.Fatal(err)
	}
	s.serve(t, cfg, discard, read)
	for id, want := range map[string]struct {
		status int
		body   string
	}{
		lateID:     {200, "eagle:bald eagle"},
		pendingID:  {202, "pending\n"},
		answeredID: {404, ""},
		expiredID:  {404, ""},
	} {
		if r := get(t, s.url+"/results/"+id); r.status != want.status || want.body != "" && r.body != want.body {
			t.Errorf("GET /results/%s after the restart: %d %q, want %d %q", id, r.status, r.body, want.status, want.body)
		}
	}
	// No handover file yet is an empty handover.
	if h, err := frontend.ReadHandover(filepath.Join(t.TempDir(), "none.json")); err != nil || len(h.Jobs) != 0 {
		t.Fatalf("missing handover file: %+v, %v", h, err)
	}
}

// Hurry during a long drain answers the uploads still waiting at once,
// 503 with their ids, instead of after the drain timeout.
func TestHurryEndsTheDrain(t *testing.T) {
	s := newSite(t, frontend.Config{DrainTimeout: time.Hour})
	replies := make(chan reply, 1)
	go func() {
		r, err := tryUpload(s.url, "eagle.jpg", testenv.Photo(t, "eagle.jpg"))
		if err != nil {
			r.body = err.Error()
		}
		replies <- r
	}()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if c, _ := s.requests.Counts(context.Background()); c.Visible == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("upload never queued")
		}
	}
	stopped := make(chan error, 1)
	go func() { stopped <- s.stop() }()
	select {
	case r := <-replies:
		t.Fatalf("answered before Hurry, with an hour of drain left: %d %q", r.status, r.body)
	case <-time.After(300 * time.Millisecond):
	}
	s.srv.Hurry()
	select {
	case r := <-replies:
		if id := r.header.Get("X-Request-Id"); r.status != 503 || !strings.Contains(r.body, "/results/"+id) {
			t.Fatalf("upload open when hurried: %d %q", r.status, r.body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("still waiting 10s after Hurry")
	}
	if err := <-stopped; err == nil || !strings.Contains(err.Error(), "cut short") {
		t.Fatalf("Serve after Hurry: %v", err)
	}
}
