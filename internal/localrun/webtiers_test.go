package localrun_test

import (
	"bufio"
	"context"
	"encoding/json"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/surgeml/surge/events"
	"github.com/surgeml/surge/internal/assets"
	"github.com/surgeml/surge/internal/backend"
	"github.com/surgeml/surge/internal/embedded"
	"github.com/surgeml/surge/internal/frontend"
	"github.com/surgeml/surge/internal/localrun"
	"github.com/surgeml/surge/internal/testenv"
	"github.com/surgeml/surge/internal/workload"
)

// Three web tiers share one port through the kernel's SO_REUSEPORT; one
// is killed with SIGKILL half-way through the 1000-face workload at 100
// concurrent. Every request is answered correctly, directly or on the
// client's one retry of its cut connection; a retry whose first upload
// was queued is answered from the results table, and no upload costs a
// second inference (one answer recorded per request that reached a
// worker, one per name; at most one more per retry not answered from the
// table). The dead tier's slot gets a new tier under a new
// id; its reply queue is drained and deleted by the sweeper; the request
// queue, the shared response queue and the live tiers' reply queues end
// empty.
func TestThreeWebTiersOneKilledLoseNothing(t *testing.T) {
	gallery := testenv.EnrollFaces(t, bin(t))
	var logs testenv.Buffer
	const prefix = "e2e"
	sys, err := localrun.Start(context.Background(), localrun.Config{
		Bin:     bin(t),
		Backend: backend.Config{Kind: "local", Prefix: prefix, DataDir: t.TempDir(), Visibility: 30 * time.Second, MaxReceives: 5},
		Host:    "127.0.0.1", Web: 3,
		MaxWorkers: maxWorkers, Tick: time.Second, ScaleInDelay: time.Second,
		// Short, so that the dead tier's queue goes within the test; its
		// requests are all answered by then.
		ReplyQueueGrace: 2 * time.Second,
		WorkerArgs:      []string{"-ort-lib", testenv.RuntimeLib(t), "-model", testenv.Model(t).Path, "-gallery", gallery},
		// As surge run does: a tier that replaces the dead one knows from
		// its start which answers in the table are the workers'.
		WebArgs: []string{"-model-name", assets.WithGallery(testenv.Model(t).Name)},
	}, slog.New(slog.NewJSONHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := sys.Stop(context.Background()); err != nil {
			t.Errorf("stopping: %v", err)
		}
	})
	tiers := sys.WebTiers()
	if len(tiers) != 3 {
		t.Fatalf("%d web tiers, want 3", len(tiers))
	}
	ctx := context.Background()
	names := events.NamesFor(prefix)
	queues, err := sys.Backends.Replies.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, tier := range tiers {
		if !slices.Contains(queues, names.ReplyQueue(tier.ID)) {
			t.Fatalf("no reply queue for %s among %q", tier, queues)
		}
	}

	files := testenv.Images(t, "datasets", "faces", "face_images_1000")
	expected := testenv.Labels(t, "datasets", "faces", "face_images_1000.csv")
	slot := rand.IntN(len(tiers))
	var killed *localrun.WebTier
	var once sync.Once
	kill := make(chan struct{})
	killedDone := make(chan struct{})
	go func() {
		defer close(killedDone)
		<-kill
		killed = sys.KillWebTier(slot)
	}()
	start := time.Now()
	rep, err := workload.Run(ctx, workload.Config{
		// The run takes seconds; a client kept a minute waiting has lost
		// its answer.
		URL: sys.URL + "/", Files: files, Expected: expected, Concurrency: 100, Timeout: time.Minute, RetryCut: true,
		Progress: func(_, done, total int) {
			if done >= total/2 {
				once.Do(func() { close(kill) })
			}
		},
	})
	once.Do(func() { close(kill) })
	<-killedDone
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	rep.Print(&out, expected)
	t.Logf("killed %s after half the answers; %d requests in %v:\n%s", killed, rep.Requests, rep.Duration.Round(time.Millisecond), out.String())
	if !rep.OK() || rep.Correct != len(files) {
		t.Fatalf("%d correct of %d, %d failed, %d wrong, %d misrouted", rep.Correct, len(files), rep.Failed, rep.Wrong, rep.Misrouted)
	}
	if rep.Retried == 0 || rep.RetriedCached == 0 {
		t.Fatalf("%d requests retried after a cut, %d of them answered from the table: the kill cut no queued upload", rep.Retried, rep.RetriedCached)
	}

	// One inference per upload, but for a retry whose first upload was
	// queued and not yet marked when its tier died (the mark follows the
	// send): the table holds one answer per name and one per request a
	// worker answered, and each second inference adds one, so at most one
	// per retry not answered from the table.
	table := sys.Backends.Table.(*embedded.Table)
	afresh := rep.Retried - rep.RetriedCached
	n, err := table.Len(ctx)
	if err != nil || n < 2*len(files) || n > 2*len(files)+afresh {
		t.Fatalf("results table holds %d items (%v), want %d to %d: one per name, one per request answered by a worker, and at most one more per retry queued afresh",
			n, err, 2*len(files), 2*len(files)+afresh)
	}
	t.Logf("%d retried after a cut: %d answered from the table, %d queued afresh, of which %d were second inferences (their first was queued before its tier died, not yet marked)",
		rep.Retried, rep.RetriedCached, afresh, n-2*len(files))

	dead := names.ReplyQueue(killed.ID)
	deadline := time.Now().Add(30 * time.Second)
	for {
		backlog, left, err := sys.ReplyQueues(ctx)
		if err != nil {
			t.Fatal(err)
		}
		req, err1 := sys.Backends.Requests.Counts(ctx)
		resp, err2 := sys.Backends.Responses.Counts(ctx)
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		if len(left) == 0 && backlog == 0 && req.Backlog() == 0 && resp.Backlog() == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("30 s after the run: dead tiers' reply queues %q; live ones' backlog %d; request queue %+v; response queue %+v", left, backlog, req, resp)
		}
		time.Sleep(250 * time.Millisecond)
	}
	moved, deleted := sweeps(t, logs.String(), dead)
	if !deleted {
		t.Fatalf("the sweeper did not log deleting %s:\n%s", dead, logs.String())
	}
	t.Logf("%s: %d results moved to the shared queue, then deleted; all queues empty %v after the kill's run began",
		dead, moved, time.Since(start).Round(time.Millisecond))

	now := sys.WebTiers()
	if len(now) != 3 || now[slot].ID == killed.ID {
		t.Fatalf("tiers after the kill %v, want 3 with slot %d under a new id", now, slot+1)
	}
	for _, tier := range now {
		select {
		case <-tier.Done():
			t.Fatalf("%s is not running", tier)
		default:
		}
	}
}

// sweeps reads the system's JSON log for what the sweeper did with the
// reply queue named queue: the results it moved from the queues of dead
// tiers in all, and whether it deleted the queue.
func sweeps(t *testing.T, log, queue string) (moved int, deleted bool) {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var rec struct {
			Msg   string `json:"msg"`
			Queue string `json:"queue"`
			Moved int    `json:"moved"`
		}
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		switch rec.Msg {
		case "swept the reply queues of web instances that are gone":
			moved += rec.Moved
		case "deleted the reply queue of a web instance that is gone":
			deleted = deleted || rec.Queue == queue
		}
	}
	return moved, deleted
}

// `surge run -web 2` names its two tiers and their ids, serves through
// both (each /status names the reply queue of the tier it came from), and
// Ctrl-C stops every process it started.
func TestRunCommandWithTwoWebTiers(t *testing.T) {
	cmd, url, stderr := startRun(t, t.TempDir(), "-web", "2")
	ids := regexp.MustCompile(`local-[12]-[0-9a-f]{6}`).FindAllString(stderr.String(), -1)
	_, said, _ := strings.Cut(stderr.String(), "Surge is running at ")
	if !strings.Contains(said, "2 web tiers sharing the port") || len(slices.Compact(slices.Sorted(slices.Values(ids)))) != 2 {
		t.Fatalf("surge run does not name its two web tiers:\n%s", stderr)
	}
	rep := testenv.Workload(t, url, []string{testenv.Path(t, "images", "darknet", "eagle.jpg")}, map[string]string{"eagle": "bald eagle"})
	if rep.Correct != 1 {
		t.Fatal("eagle.jpg not answered")
	}
	// Each new connection is given to one tier by a hash of its ports:
	// a few reach both.
	seen := map[string]bool{}
	for range 50 {
		client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := client.Get(url + "/status")
		if err != nil {
			t.Fatal(err)
		}
		var st frontend.Status
		err = json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if err != nil || st.ReplyQueue == nil {
			t.Fatalf("/status: %v, reply queue %v", err, st.ReplyQueue)
		}
		seen[st.ReplyQueue.Name] = true
	}
	for _, id := range ids {
		if !seen[events.NamesFor("surge").ReplyQueue(id)] {
			t.Errorf("no /status from %s in 50 connections: %v", id, seen)
		}
	}
	pids := descendants(cmd.Process.Pid)
	cmd.Process.Signal(os.Interrupt)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("surge run exited with %v:\n%s", err, stderr)
	}
	for _, pid := range pids {
		if syscall.Kill(pid, 0) == nil {
			t.Errorf("process %d outlived surge run", pid)
		}
	}
}
