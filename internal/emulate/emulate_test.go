package emulate_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/ec2"

	"github.com/surgeml/surge/internal/emulate"
	"github.com/surgeml/surge/internal/s3store"
	"github.com/surgeml/surge/internal/sqsqueue"
	"github.com/surgeml/surge/internal/testenv"
)

var bin string

func TestMain(m *testing.M) { testenv.MainWithBinaries(m, &bin) }

const maxWorkers = 19

// faceCloud enrolls the 100-face gallery and starts an emulated AWS
// deployment in gallery mode.
func faceCloud(t *testing.T, tune ...func(*emulate.Config)) (*emulate.Cloud, string) {
	t.Helper()
	gallery := testenv.EnrollFaces(t, bin)
	data := t.TempDir()
	cfg := emulate.Config{
		Bin: bin, DataDir: data, Host: "127.0.0.1", MaxWorkers: maxWorkers,
		Files:      emulate.Files{RuntimeLib: testenv.RuntimeLib(t), Model: testenv.Model(t).Path, Gallery: gallery},
		Visibility: 5 * time.Second,
	}
	for _, f := range tune {
		f(&cfg)
	}
	cloud, err := emulate.Start(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cloud.Stop(context.Background())
		if t.Failed() {
			logs, _ := filepath.Glob(filepath.Join(data, "logs", "*.log"))
			for _, l := range logs {
				b, _ := os.ReadFile(l)
				if len(b) > 2000 {
					b = b[len(b)-2000:]
				}
				t.Logf("--- %s\n%s", filepath.Base(l), b)
			}
		}
	})
	return cloud, data
}

// poller asks moto for the running app-tier instances, as a grader does.
type poller struct {
	mu      sync.Mutex
	samples []sample
	stop    func()
}

type sample struct {
	at      time.Time
	running int
}

func poll(t *testing.T, c *emulate.Cloud, every time.Duration) *poller {
	ctx, cancel := context.WithCancel(context.Background())
	p := &poller{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			if n, err := c.RunningWorkers(ctx); err == nil {
				p.mu.Lock()
				p.samples = append(p.samples, sample{time.Now(), n})
				p.mu.Unlock()
			}
			select {
			case <-ctx.Done():
			case <-time.After(every):
			}
		}
	}()
	p.stop = func() { cancel(); <-done }
	t.Cleanup(p.stop)
	return p
}

func (p *poller) counts() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]int, len(p.samples))
	for i, s := range p.samples {
		out[i] = s.running
	}
	return out
}

// firstAt is when the count first met cond after since.
func (p *poller) firstAt(since time.Time, cond func(int) bool) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.samples {
		if s.at.After(since) && cond(s.running) {
			return s.at, true
		}
	}
	return time.Time{}, false
}

func faces(t *testing.T) ([]string, map[string]string) {
	return testenv.Images(t, "datasets", "faces", "face_images_100"), testenv.Labels(t, "datasets", "faces", "face_images_100.csv")
}

// Gallery mode on emulated AWS: 100 concurrent face requests all answered
// correctly, the fleet (as moto reports it every 2 s) from 0 up, never
// above the cap, back to 0 within 5 s of the last answer, then empty
// queues and exactly 100 objects per bucket.
func TestFacesOnEmulatedAWS(t *testing.T) {
	cloud, _ := faceCloud(t)
	grader := poll(t, cloud, 2*time.Second)
	fine := poll(t, cloud, 100*time.Millisecond)
	time.Sleep(2500 * time.Millisecond) // the grader's first look, at an idle fleet
	files, expected := faces(t)
	start := time.Now()
	rep := testenv.Workload(t, cloud.URL, files, expected)
	last := time.Now()
	if rep.Correct != 100 {
		t.Fatalf("%d of 100 correct", rep.Correct)
	}
	if up, ok := fine.firstAt(start, func(n int) bool { return n > 0 }); ok {
		t.Logf("reaction: first request to first instance running %v", up.Sub(start).Round(10*time.Millisecond))
	}

	for deadline := last.Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		n, err := cloud.RunningWorkers(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			t.Logf("drain: last answer to 0 instances %v", time.Since(last).Round(10*time.Millisecond))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d instances still running 5s after the last answer", n)
		}
	}
	time.Sleep(2 * time.Second) // one more grader poll at zero
	grader.stop()
	fine.stop()
	counts := grader.counts()
	t.Logf("moto every 2s: %v", counts)
	peak := 0
	for _, n := range fine.counts() {
		peak = max(peak, n)
	}
	if counts[0] != 0 || counts[len(counts)-1] != 0 || peak <= 1 || peak > maxWorkers {
		t.Fatalf("fleet went %v (peak %d); want from 0, above 1, at most %d, back to 0", counts, peak, maxWorkers)
	}

	ctx := context.Background()
	for _, name := range []string{cloud.Names.RequestQueue, cloud.Names.ResponseQueue} {
		q, err := sqsqueue.Open(ctx, cloud.Clients.SQS, name)
		if err != nil {
			t.Fatal(err)
		}
		c, err := q.Counts(ctx)
		if err != nil || c.Backlog() != 0 {
			t.Fatalf("%s: %+v, %v", name, c, err)
		}
	}
	for _, b := range []string{cloud.Names.InputBucket, cloud.Names.OutputBucket} {
		keys, err := s3store.New(cloud.Clients.S3, b).List(ctx)
		if err != nil || len(keys) != 100 {
			t.Fatalf("%s holds %d objects, want 100 (%v)", b, len(keys), err)
		}
	}
}

// Terminating, through moto, an instance whose worker holds a request
// loses nothing: the request times out, comes back and is answered.
func TestBusyInstanceTerminated(t *testing.T) {
	cloud, data := faceCloud(t)
	files, expected := faces(t)
	// A worker reports idle a moment late, so one it calls busy may just
	// have finished; terminating three, apart, makes sure at least one
	// dies holding a request.
	var terminated []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		for deadline := time.Now().Add(60 * time.Second); len(terminated) < 3 && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if id, ok := cloud.BusyInstance(); ok && !slices.Contains(terminated, id) {
				if _, err := cloud.Clients.EC2.TerminateInstances(context.Background(), &ec2.TerminateInstancesInput{InstanceIds: []string{id}}); err == nil {
					terminated = append(terminated, id)
					time.Sleep(300 * time.Millisecond)
				}
			}
		}
	}()
	rep := testenv.Workload(t, cloud.URL, files, expected)
	<-done
	if len(terminated) == 0 {
		t.Fatal("no busy instance was found to terminate")
	}
	if rep.Correct != 100 {
		t.Fatalf("%d of 100 correct", rep.Correct)
	}
	// A killed worker's request was answered on a second delivery.
	logs, _ := filepath.Glob(filepath.Join(data, "logs", "i-*.log"))
	redelivered := 0
	for _, l := range logs {
		b, _ := os.ReadFile(l)
		redelivered += strings.Count(string(b), `"msg":"recognised"`) - strings.Count(string(b), `"receive":1,`)
	}
	if redelivered == 0 {
		t.Fatal("no request was answered on a redelivery")
	}
	t.Logf("terminated busy %v mid-run; 100/100 answered (%d on redelivery), p99 %v", terminated, redelivered, rep.P99.Round(time.Millisecond))
}

// With the scaler holding the fleet (a scale-in delay of an hour), an idle
// worker terminates its own instance: the call reaches moto, and moto
// reports the instance gone.
func TestWorkerTerminatesItsOwnInstance(t *testing.T) {
	cloud, data := faceCloud(t, func(c *emulate.Config) { c.ScaleInDelay = time.Hour; c.IdleShutdown = 2 * time.Second })
	files, expected := faces(t)
	testenv.Workload(t, cloud.URL, files[:1], expected)
	answered := time.Now()
	for deadline := answered.Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		n, err := cloud.RunningWorkers(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d instances still running 15s after the last answer", n)
		}
	}
	logs, _ := filepath.Glob(filepath.Join(data, "logs", "i-*.log"))
	selfTerminated := 0
	for _, l := range logs {
		b, _ := os.ReadFile(l)
		if strings.Contains(string(b), "terminating this instance") {
			selfTerminated++
		}
	}
	if selfTerminated == 0 {
		t.Fatal("no worker terminated its own instance")
	}
	t.Logf("the idle worker terminated its instance %v after answering", time.Since(answered).Round(100*time.Millisecond))
}
