package embedded_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/surgeml/surge/internal/embedded"
	"github.com/surgeml/surge/internal/testenv"
)

func openQueue(t *testing.T, dir string, opts embedded.QueueOptions) *embedded.Queue {
	t.Helper()
	q, err := embedded.OpenQueue(context.Background(), dir, "jobs", opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

func TestQueueContract(t *testing.T) {
	testenv.QueueContract(t, func(t *testing.T) testenv.QueueSetup {
		opts := embedded.QueueOptions{Visibility: time.Second, MaxReceives: 3}
		q := openQueue(t, t.TempDir(), opts)
		return testenv.QueueSetup{Queue: q, DeadLetters: q.DeadLetters(), Visibility: opts.Visibility, MaxReceives: opts.MaxReceives}
	})
}

func TestSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	q, err := embedded.OpenQueue(ctx, dir, "jobs", embedded.QueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := q.Send(ctx, []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	q.Close()

	q = openQueue(t, dir, embedded.QueueOptions{})
	c, err := q.Counts(ctx)
	if err != nil || c.Visible != 3 {
		t.Fatalf("after reopening: counts %+v, %v", c, err)
	}
}

// Long polls of one process take turns at the table: with nothing to
// take, each still ends after its own wait, not after the others'; a
// cancelled one leaves at once; and messages sent while they wait are
// each taken once, promptly.
func TestLongPollsTakeTurns(t *testing.T) {
	q := openQueue(t, t.TempDir(), embedded.QueueOptions{Visibility: time.Minute})
	ctx := context.Background()
	const polls = 8
	var wg sync.WaitGroup
	start := time.Now()
	for range polls {
		wg.Go(func() {
			if msgs, err := q.Receive(ctx, 10, 300*time.Millisecond); err != nil || len(msgs) != 0 {
				t.Errorf("empty queue: %d messages, %v", len(msgs), err)
			}
		})
	}
	wg.Wait()
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("%d long polls of 300 ms took %v together: their waits stacked", polls, took)
	}

	cctx, cancel := context.WithCancel(ctx)
	holder := make(chan struct{})
	go func() { q.Receive(ctx, 1, 500*time.Millisecond); close(holder) }()
	time.Sleep(50 * time.Millisecond)
	cancel()
	if _, err := q.Receive(cctx, 1, time.Minute); err != context.Canceled {
		t.Errorf("cancelled long poll: %v, want context.Canceled", err)
	}
	<-holder

	const sent = 40
	got := make(chan string, sent)
	pollCtx, stop := context.WithCancel(ctx)
	for range polls {
		wg.Go(func() {
			for pollCtx.Err() == nil {
				msgs, _ := q.Receive(pollCtx, 10, 5*time.Second)
				for _, m := range msgs {
					got <- string(m.Body)
				}
			}
		})
	}
	for i := range sent {
		if err := q.Send(ctx, []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	for range sent {
		select {
		case b := <-got:
			if seen[b] {
				t.Errorf("message %s taken twice", b)
			}
			seen[b] = true
		case <-time.After(5 * time.Second):
			t.Fatalf("only %d of %d messages taken", len(seen), sent)
		}
	}
	stop()
	wg.Wait()
}

// queueChild is the child side of TestConcurrentProcesses: receive, note each delivery,
// work briefly, delete, until the queue stays empty. With hangAfter > 0 it
// stops dead holding a batch after that many deliveries, waiting to be killed.

const childVisibility = 2 * time.Second

func queueChild(dir, logPath string, hangAfter int) int {
	ctx := context.Background()
	q, err := embedded.OpenQueue(ctx, dir, "jobs", embedded.QueueOptions{Visibility: childVisibility, MaxReceives: 10})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	delivered := 0
	for idle := 0; idle < 3; {
		msgs, err := q.Receive(ctx, 4, time.Second)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		if len(msgs) == 0 {
			idle++
			continue
		}
		idle = 0
		// One line per delivery, written before any work, so a kill -9
		// cannot hide a delivery from the checker.
		for _, m := range msgs {
			fmt.Fprintf(log, "recv %s %d %d\n", m.Body, m.ReceiveCount, time.Now().UnixNano())
		}
		log.Sync()
		if delivered += len(msgs); hangAfter > 0 && delivered > hangAfter {
			fmt.Fprintln(log, "hang")
			select {}
		}
		for _, m := range msgs {
			time.Sleep(time.Millisecond)
			// Logged before the delete: dying in between means redelivery
			// and a second "done", never a deleted message without one.
			fmt.Fprintf(log, "done %s %d %d\n", m.Body, m.ReceiveCount, time.Now().UnixNano())
			if err := q.Delete(ctx, m.Receipt); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 2
			}
		}
	}
	return 0
}

// Several processes drain one queue while one of them is killed mid-run:
// every message is processed, and no message is held by two processes
// inside its visibility timeout.
func TestConcurrentProcesses(t *testing.T) {
	testenv.SkipShort(t, "processes waiting out a kill -9 and a visibility timeout (5 s)")
	const messages, workers = 400, 4
	dir := t.TempDir()
	ctx := context.Background()
	q := openQueue(t, dir, embedded.QueueOptions{Visibility: childVisibility, MaxReceives: 10})
	for i := range messages {
		if err := q.Send(ctx, []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	var cmds []*exec.Cmd
	for w := range workers {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		hang := "0"
		if w == 0 {
			hang = "20"
		}
		cmd.Env = append(os.Environ(),
			"SQLITEQUEUE_CHILD_HANG_AFTER="+hang,
			"SQLITEQUEUE_CHILD_DIR="+dir,
			"SQLITEQUEUE_CHILD_LOG="+filepath.Join(dir, fmt.Sprintf("worker-%d.log", w)))
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	// Kill worker 0 while it holds messages.
	victim := filepath.Join(dir, "worker-0.log")
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if b, err := os.ReadFile(victim); err == nil && strings.Contains(string(b), "hang") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("worker 0 never started")
		}
	}
	if err := cmds[0].Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmds[0].Wait()
	for _, cmd := range cmds[1:] {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("worker: %v", err)
		}
	}

	type delivery struct {
		worker int
		count  int
		at     time.Time
	}
	deliveries := map[string][]delivery{}
	done := map[string]int{}
	for w := range workers {
		f, err := os.Open(filepath.Join(dir, fmt.Sprintf("worker-%d.log", w)))
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) != 4 {
				continue // the victim's last line may be cut short
			}
			n, _ := strconv.Atoi(fields[2])
			ns, _ := strconv.ParseInt(fields[3], 10, 64)
			switch fields[0] {
			case "recv":
				deliveries[fields[1]] = append(deliveries[fields[1]], delivery{w, n, time.Unix(0, ns)})
			case "done":
				done[fields[1]]++
			}
		}
		f.Close()
	}
	redelivered := 0
	for i := range messages {
		body := strconv.Itoa(i)
		if done[body] == 0 {
			t.Errorf("message %s was never processed", body)
		}
		ds := deliveries[body]
		for j := 1; j < len(ds); j++ {
			redelivered++
			// The log lines trail the receives a little; a second worker
			// inside the timeout would show as a gap far below it.
			if gap := ds[j].at.Sub(ds[j-1].at); gap < childVisibility-200*time.Millisecond {
				t.Errorf("message %s delivered to worker %d and again to worker %d %v later, inside the %v visibility timeout",
					body, ds[j-1].worker, ds[j].worker, gap, childVisibility)
			}
			if ds[j].count <= ds[j-1].count {
				t.Errorf("message %s: receive count did not grow: %+v", body, ds)
			}
		}
	}
	if redelivered == 0 {
		t.Error("the killed worker's message was never redelivered")
	}
	c, err := q.Counts(ctx)
	if err != nil || c.Visible+c.InFlight != 0 {
		t.Fatalf("queue not empty at the end: %+v, %v", c, err)
	}
	t.Logf("%d messages, %d workers, one killed: %d redeliveries", messages, workers, redelivered)

	db, err := embedded.OpenSQLite(filepath.Join(dir, "jobs.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var check string
	if err := db.QueryRow("pragma integrity_check").Scan(&check); err != nil || check != "ok" {
		t.Fatalf("integrity check after kill -9: %q, %v", check, err)
	}
}

// BenchmarkWakeUp measures send → long-poll receive → delete between two
// independent handles on one file, the hop every request makes twice.
func BenchmarkWakeUp(b *testing.B) {
	dir := b.TempDir()
	ctx := context.Background()
	sender, err := embedded.OpenQueue(ctx, dir, "jobs", embedded.QueueOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer sender.Close()
	receiver, err := embedded.OpenQueue(ctx, dir, "jobs", embedded.QueueOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer receiver.Close()
	for b.Loop() {
		got := make(chan error, 1)
		go func() {
			msgs, err := receiver.Receive(ctx, 1, 5*time.Second)
			if err == nil && len(msgs) == 1 {
				err = receiver.Delete(ctx, msgs[0].Receipt)
			} else if err == nil {
				err = fmt.Errorf("long poll ended empty")
			}
			got <- err
		}()
		if err := sender.Send(ctx, []byte("x")); err != nil {
			b.Fatal(err)
		}
		if err := <-got; err != nil {
			b.Fatal(err)
		}
	}
}

// A message whose last delivery died with its worker reaches the
// dead-letter queue as soon as anyone looks at either queue, even when no
// consumer receives from the source any more: a web tier watching the
// dead letters (another process, with its own handle) sees it within
// seconds, and the source no longer counts it.
func TestDeadLetterSeenWithoutSourceReceivers(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	opts := embedded.QueueOptions{Visibility: 200 * time.Millisecond, MaxReceives: 2}
	worker := openQueue(t, dir, opts)
	if err := worker.Send(ctx, []byte("poison")); err != nil {
		t.Fatal(err)
	}
	for i := range opts.MaxReceives {
		// A worker that dies holding the message: received, never deleted.
		msgs, err := worker.Receive(ctx, 1, 5*time.Second)
		if err != nil || len(msgs) != 1 {
			t.Fatalf("delivery %d: %d messages, %v", i+1, len(msgs), err)
		}
	}
	worker.Close() // every worker gone

	watcher := openQueue(t, dir, opts)
	dead := watcher.DeadLetters()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		c, err := dead.Counts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if c.Backlog() == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dead-letter counts %+v 5s after the last delivery timed out", c)
		}
	}
	msgs, err := dead.Receive(ctx, 10, 2*time.Second)
	if err != nil || len(msgs) != 1 || string(msgs[0].Body) != "poison" {
		t.Fatalf("dead letters: %+v, %v", msgs, err)
	}
	if err := dead.Delete(ctx, msgs[0].Receipt); err != nil {
		t.Fatal(err)
	}
	if c, err := watcher.Counts(ctx); err != nil || c.Backlog() != 0 {
		t.Fatalf("source queue still counts the dead letter: %+v, %v", c, err)
	}

	// A fresh handle on the dead-letter queue alone also moves it.
	if err := watcher.Send(ctx, []byte("poison-2")); err != nil {
		t.Fatal(err)
	}
	for range opts.MaxReceives {
		if msgs, err := watcher.Receive(ctx, 1, 5*time.Second); err != nil || len(msgs) != 1 {
			t.Fatalf("delivery: %d messages, %v", len(msgs), err)
		}
	}
	msgs, err = openQueue(t, dir, opts).DeadLetters().Receive(ctx, 10, 3*time.Second)
	if err != nil || len(msgs) != 1 || string(msgs[0].Body) != "poison-2" {
		t.Fatalf("dead letters through a new handle: %+v, %v", msgs, err)
	}
}
