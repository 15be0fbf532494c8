package labeling_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"image"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/surgeml/surge/events"
	"github.com/surgeml/surge/internal/embedded"
	"github.com/surgeml/surge/internal/labeling"
	"github.com/surgeml/surge/internal/recognize"
	"github.com/surgeml/surge/internal/testenv"
)

// rig is a worker's world: real embedded queues and buckets in a temporary
// directory, and the real model, or under -short the FakeRecognizer that
// labels testenv.Photo's stand-ins.
type rig struct {
	dir                 string
	requests, responses *embedded.Queue
	inputs, outputs     *embedded.Bucket
	table               *embedded.Table
	recognizer          labeling.Recognizer
}

// newRig makes a rig. Under -short the test runs in parallel with the
// others (testenv.Parallel).
func newRig(t *testing.T, visibility time.Duration, maxReceives int) *rig {
	t.Helper()
	testenv.Parallel(t)
	ctx := context.Background()
	r := &rig{dir: t.TempDir()}
	var err error
	if r.requests, err = embedded.OpenQueue(ctx, r.dir, "req", embedded.QueueOptions{Visibility: visibility, MaxReceives: maxReceives}); err != nil {
		t.Fatal(err)
	}
	if r.responses, err = embedded.OpenQueue(ctx, r.dir, "resp", embedded.QueueOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.requests.Close(); r.responses.Close() })
	if r.inputs, err = embedded.OpenBucket(filepath.Join(r.dir, "in")); err != nil {
		t.Fatal(err)
	}
	if r.outputs, err = embedded.OpenBucket(filepath.Join(r.dir, "out")); err != nil {
		t.Fatal(err)
	}
	if r.table, err = embedded.OpenTable(ctx, r.dir, "x-dynamoDB"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.table.Close() })
	r.recognizer = testenv.FakeRecognizer{}
	if !testing.Short() {
		c, err := recognize.NewClassifier(testenv.Runtime(t), testenv.Model(t), 1)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		r.recognizer = c
	}
	return r
}

// start runs a worker until the returned stop is called; stop waits for
// it to finish what it holds.
func (r *rig) start(t *testing.T, cfg labeling.Config) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	w := labeling.New(cfg, r.requests, r.responses, r.inputs, r.outputs, r.table, r.recognizer, slog.New(slog.DiscardHandler))
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

// submit stores data under name and queues a request for it, as the web
// tier does.
func (r *rig) submit(t *testing.T, id, name string, data []byte) events.Request {
	t.Helper()
	sum := sha256.Sum256(data)
	req := events.NewRequest(id, name, hex.EncodeToString(sum[:]), time.Now())
	if err := r.inputs.Put(context.Background(), req.Key, data); err != nil {
		t.Fatal(err)
	}
	body, err := events.EncodeRequest(req)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.requests.Send(context.Background(), body); err != nil {
		t.Fatal(err)
	}
	return req
}

func (r *rig) result(t *testing.T, within time.Duration) events.Result {
	t.Helper()
	msgs, err := r.responses.Receive(context.Background(), 1, within)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 {
		t.Fatalf("no result within %v", within)
	}
	if err := r.responses.Delete(context.Background(), msgs[0].Receipt); err != nil {
		t.Fatal(err)
	}
	res, err := events.DecodeResult(msgs[0].Body)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func (r *rig) counts(t *testing.T, q *embedded.Queue) events.Counts {
	t.Helper()
	c, err := q.Counts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// eventuallyEmpty waits for the request queue to empty: the worker deletes
// a request just after answering it.
// runUntilEmpty runs w until the request queue is empty, then stops it.
func (r *rig) runUntilEmpty(t *testing.T, w *labeling.Worker) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	r.eventuallyEmpty(t)
	cancel()
	<-done
}

func (r *rig) eventuallyEmpty(t *testing.T) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		c := r.counts(t, r.requests)
		if c.Backlog() == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("requests not deleted: %+v", c)
		}
	}
}

func TestRecognises(t *testing.T) {
	r := newRig(t, 30*time.Second, 5)
	r.start(t, labeling.Config{Name: "app-tier-instance-1", Wait: time.Second})
	r.submit(t, "id-1", "eagle.jpg", testenv.Photo(t, "eagle.jpg"))
	res := r.result(t, 10*time.Second)
	if res.ID != "id-1" || res.Answer() != "eagle:bald eagle" || res.Error != nil || res.Worker != "app-tier-instance-1" || res.Model != testenv.ModelName() {
		t.Fatalf("result %+v", res)
	}
	label, err := r.outputs.Get(context.Background(), "eagle")
	if err != nil || string(label) != "bald eagle" {
		t.Fatalf("output bucket holds %q, %v", label, err)
	}
	data := testenv.Photo(t, "eagle.jpg")
	sum := sha256.Sum256(data)
	it, err := r.table.Get(context.Background(), "eagle.jpg")
	if err != nil || it.Label != "bald eagle" || it.Stem != "eagle" || it.Model != res.Model || it.SHA256 != hex.EncodeToString(sum[:]) || it.Score != res.Score || it.Time.IsZero() {
		t.Fatalf("results table holds %+v, %v", it, err)
	}
	if res.Unrecorded != "" {
		t.Fatalf("recorded answer says %q", res.Unrecorded)
	}
	r.eventuallyEmpty(t)
}

// A results table that cannot be written (another process holds it
// locked) costs the cache, not the answer: it goes out, saying why it was
// not recorded.
func TestAnswersWhenTheTableIsLocked(t *testing.T) {
	r := newRig(t, 30*time.Second, 5)
	testenv.LockSQLite(t, r.table.Path())
	r.start(t, labeling.Config{Wait: time.Second})
	r.submit(t, "id-1", "eagle.jpg", testenv.Photo(t, "eagle.jpg"))
	res := r.result(t, 10*time.Second)
	if res.Answer() != "eagle:bald eagle" || !strings.Contains(res.Unrecorded, "locked") {
		t.Fatalf("result %+v; want the label and why it is unrecorded", res)
	}
	r.eventuallyEmpty(t)
}

func TestPermanentFailuresAreAnswered(t *testing.T) {
	r := newRig(t, 30*time.Second, 5)
	dog := testenv.Photo(t, "dog.jpg")

	r.submit(t, "truncated", "cut.jpg", dog[:len(dog)/2])
	r.submit(t, "text", "notes.jpg", []byte("this is not a picture"))
	gone := r.submit(t, "gone", "gone.jpg", dog)
	if err := r.inputs.Delete(context.Background(), gone.Key); err != nil {
		t.Fatal(err)
	}
	// Another upload replaced the bytes under the same name.
	r.submit(t, "replaced", "same.jpg", dog)
	if err := r.inputs.Put(context.Background(), "same.jpg", testenv.Photo(t, "eagle.jpg")); err != nil {
		t.Fatal(err)
	}
	// Only now: a worker already running could label the first bytes
	// before they are replaced.
	r.start(t, labeling.Config{Wait: time.Second})

	want := map[string]events.ErrorCode{
		"truncated": events.ErrUndecodable,
		"text":      events.ErrUndecodable,
		"gone":      events.ErrInputMissing,
		"replaced":  events.ErrInputMissing,
	}
	for range want {
		res := r.result(t, 10*time.Second)
		if res.Error == nil || res.Error.Code != want[res.ID] || res.Label != "" {
			t.Errorf("%s: result %+v, want error %s", res.ID, res, want[res.ID])
		}
	}
	r.eventuallyEmpty(t)
	keys, err := r.outputs.List(context.Background())
	if err != nil || len(keys) != 0 {
		t.Fatalf("failures wrote outputs %v, %v", keys, err)
	}
}

// An input bucket that cannot be read is a passing problem: the request
// stays queued and is answered once the bucket is back.
func TestTransientFailureIsRetried(t *testing.T) {
	r := newRig(t, 30*time.Second, 5)
	r.submit(t, "id", "dog.jpg", testenv.Photo(t, "dog.jpg"))
	inDir := filepath.Join(r.dir, "in")
	if err := os.Rename(inDir, inDir+".away"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(inDir, nil, 0o600); err != nil { // reads now fail with ENOTDIR
		t.Fatal(err)
	}
	r.start(t, labeling.Config{Wait: time.Second})
	for deadline := time.Now().Add(10 * time.Second); r.counts(t, r.requests).InFlight == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the worker never took the request")
		}
	}
	time.Sleep(200 * time.Millisecond)
	if c := r.counts(t, r.responses); c.Visible != 0 {
		t.Fatalf("a transient failure was answered: %+v", c)
	}
	os.Remove(inDir)
	if err := os.Rename(inDir+".away", inDir); err != nil {
		t.Fatal(err)
	}
	// The retry comes after the shortened invisibility (2s on the first).
	res := r.result(t, 10*time.Second)
	if res.Error != nil || res.Answer() != "dog:Alaskan Malamute" {
		t.Fatalf("after the bucket came back: %+v", res)
	}
}

// On its last delivery a transient failure is reported to the client and
// the request is left for the dead-letter queue.
func TestLastDeliveryReportsFailure(t *testing.T) {
	r := newRig(t, 30*time.Second, 1)
	r.submit(t, "id", "dog.jpg", testenv.Photo(t, "dog.jpg"))
	inDir := filepath.Join(r.dir, "in")
	os.Rename(inDir, inDir+".away")
	os.WriteFile(inDir, nil, 0o600)
	r.start(t, labeling.Config{Wait: time.Second, MaxReceives: 1})
	res := r.result(t, 10*time.Second)
	if res.Error == nil || res.Error.Code != events.ErrFailed {
		t.Fatalf("result %+v, want a failure", res)
	}
	dead, err := r.requests.DeadLetters().Receive(context.Background(), 1, 10*time.Second)
	if err != nil || len(dead) != 1 {
		t.Fatalf("dead-letter queue: %d messages, %v", len(dead), err)
	}
}

// A message that is not a request is not answered (there is no one to
// answer) and moves to the dead-letter queue instead of looping forever.
func TestUnreadableRequestIsDeadLettered(t *testing.T) {
	r := newRig(t, 300*time.Millisecond, 2)
	if err := r.requests.Send(context.Background(), []byte(`{"v":99}`)); err != nil {
		t.Fatal(err)
	}
	r.start(t, labeling.Config{Wait: 100 * time.Millisecond, Visibility: 300 * time.Millisecond, MaxReceives: 2})
	dead, err := r.requests.DeadLetters().Receive(context.Background(), 1, 10*time.Second)
	if err != nil || len(dead) != 1 || string(dead[0].Body) != `{"v":99}` {
		t.Fatalf("dead-letter queue: %+v, %v", dead, err)
	}
}

// slowRecognizer is a test double around the real model that takes
// longer than the visibility timeout, to exercise extension.
type slowRecognizer struct {
	labeling.Recognizer
	delay time.Duration
}

func (s slowRecognizer) Recognize(img image.Image) (string, float64, error) {
	time.Sleep(s.delay)
	return s.Recognizer.Recognize(img)
}

// A request that takes several visibility timeouts is kept hidden from
// other workers the whole time.
func TestExtendsVisibilityWhileBusy(t *testing.T) {
	const visibility = 600 * time.Millisecond
	r := newRig(t, visibility, 5)
	r.recognizer = slowRecognizer{r.recognizer, 4 * visibility}
	r.start(t, labeling.Config{Wait: 100 * time.Millisecond, Visibility: visibility})
	r.submit(t, "id", "eagle.jpg", testenv.Photo(t, "eagle.jpg"))
	for deadline := time.Now().Add(10 * time.Second); r.counts(t, r.requests).InFlight == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the worker never took the request")
		}
	}
	// A rival receiver must get nothing while the worker is busy.
	stolen, err := r.requests.Receive(context.Background(), 1, 3*visibility)
	if err != nil || len(stolen) != 0 {
		t.Fatalf("busy request handed out again: %+v, %v", stolen, err)
	}
	if res := r.result(t, 10*time.Second); res.Answer() != "eagle:bald eagle" {
		t.Fatalf("result %+v", res)
	}
}

// Stopping a worker (SIGTERM in the binary) finishes what it holds.
func TestDrainFinishesHeldRequests(t *testing.T) {
	r := newRig(t, 30*time.Second, 5)
	r.recognizer = slowRecognizer{r.recognizer, 300 * time.Millisecond}
	stop := r.start(t, labeling.Config{Wait: time.Second, Concurrency: 2})
	r.submit(t, "a", "dog.jpg", testenv.Photo(t, "dog.jpg"))
	r.submit(t, "b", "eagle.jpg", testenv.Photo(t, "eagle.jpg"))
	for deadline := time.Now().Add(10 * time.Second); r.counts(t, r.requests).InFlight < 2; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the worker never took both requests")
		}
	}
	stop()
	if c := r.counts(t, r.responses); c.Visible != 2 {
		t.Fatalf("after the drain %d results are queued, want 2", c.Visible)
	}
	if c := r.counts(t, r.requests); c.Backlog() != 0 {
		t.Fatalf("after the drain requests remain: %+v", c)
	}
}

// Held reports every change, so a scaler can tell idle workers.
func TestReportsHeld(t *testing.T) {
	r := newRig(t, 30*time.Second, 5)
	var mu sync.Mutex
	var seen []int
	r.start(t, labeling.Config{Wait: time.Second, Held: func(n int) { mu.Lock(); seen = append(seen, n); mu.Unlock() }})
	r.submit(t, "id", "dog.jpg", testenv.Photo(t, "dog.jpg"))
	r.result(t, 10*time.Second)
	time.Sleep(50 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 || seen[0] != 1 || seen[1] != 0 {
		t.Fatalf("held reports %v, want [1 0]", seen)
	}
}

// A worker with IdleExit leaves after that long without work, and not
// while it holds a request.
func TestIdleExit(t *testing.T) {
	r := newRig(t, 30*time.Second, 5)
	r.recognizer = slowRecognizer{r.recognizer, 500 * time.Millisecond}
	w := labeling.New(labeling.Config{Wait: 5 * time.Second, IdleExit: 300 * time.Millisecond}, r.requests, r.responses, r.inputs, r.outputs, r.table, r.recognizer, slog.New(slog.DiscardHandler))
	r.submit(t, "id", "dog.jpg", testenv.Photo(t, "dog.jpg"))
	start := time.Now()
	err := w.Run(context.Background())
	took := time.Since(start)
	if !errors.Is(err, labeling.ErrIdle) {
		t.Fatalf("Run = %v, want ErrIdle", err)
	}
	// 500ms of work, then 300ms idle; never the 5s long poll.
	if took < 800*time.Millisecond || took > 3*time.Second {
		t.Fatalf("left after %v", took)
	}
	if res := r.result(t, time.Second); res.Answer() != "dog:Alaskan Malamute" {
		t.Fatalf("result %+v", res)
	}
}

// A request that names its web instance's reply queue is answered there
// and recorded by its id too; one whose queue is gone is answered on the
// shared response queue, where the sweeper and the other web instances
// look.
func TestAnswersToTheReplyQueueItNames(t *testing.T) {
	r := newRig(t, 30*time.Second, 5)
	ctx := context.Background()
	names := events.NamesFor("x")
	replies := embedded.NewReplyQueues(r.dir, names)
	t.Cleanup(func() { replies.Close() })
	mine, err := replies.Create(ctx, names.ReplyQueue("w1"))
	if err != nil {
		t.Fatal(err)
	}
	w := labeling.New(labeling.Config{Wait: time.Second}, r.requests, r.responses, r.inputs, r.outputs, r.table, r.recognizer, slog.New(slog.DiscardHandler)).WithReplies(replies)
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { w.Run(wctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	send := func(id, name, replyTo string) {
		t.Helper()
		data := testenv.Photo(t, "dog.jpg")
		sum := sha256.Sum256(data)
		req := events.NewRequest(id, name, hex.EncodeToString(sum[:]), time.Now())
		req.ReplyTo = replyTo
		if err := r.inputs.Put(ctx, req.Key, data); err != nil {
			t.Fatal(err)
		}
		body, err := events.EncodeRequest(req)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.requests.Send(ctx, body); err != nil {
			t.Fatal(err)
		}
	}
	receiveOne := func(q events.Queue, where string) events.Result {
		t.Helper()
		msgs, err := q.Receive(ctx, 1, 30*time.Second)
		if err != nil || len(msgs) != 1 {
			t.Fatalf("%s: %d results, %v", where, len(msgs), err)
		}
		res, err := events.DecodeResult(msgs[0].Body)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}

	send("one", "dog.jpg", names.ReplyQueue("w1"))
	if res := receiveOne(mine, "the reply queue"); res.ID != "one" || res.ReplyTo != names.ReplyQueue("w1") || res.Label == "" {
		t.Errorf("answer on the reply queue: %+v", res)
	}
	if it, err := r.table.Get(ctx, events.RequestKey("one")); err != nil || it.Label == "" {
		t.Errorf("answer recorded by request id: %+v %v", it, err)
	}

	send("two", "dog2.jpg", names.ReplyQueue("gone"))
	if res := receiveOne(r.responses, "the shared queue"); res.ID != "two" || res.Label == "" {
		t.Errorf("answer for a gone reply queue, on the shared queue: %+v", res)
	}
}
