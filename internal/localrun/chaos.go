// This file measures the claim "nothing lost, nothing misrouted": it
// runs the face workload against the whole local system while killing
// workers (and, with several, web tiers) with SIGKILL, restarting the
// scaler and restarting the whole system once on the same data, then
// collects every answer (directly, on the client's one retry of a cut
// connection, or by id from GET /results/{id}) and tallies what each
// client finally learned.

package localrun

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/surgeml/surge/events"
	"github.com/surgeml/surge/internal/embedded"
	"github.com/surgeml/surge/internal/workload"
)

// ChaosConfig describes a chaos run. Zero values take the defaults in brackets.
type ChaosConfig struct {
	// System is the local system to run; its Host and Port are chosen
	// here (loopback, one port kept across the restart).
	System   Config
	Images   []string          // source images, cycled through
	Expected map[string]string // their labels, by the part of the name before the first dot
	Requests int               // [len(Images)]
	// Concurrency is how many requests are in flight at once [100].
	Concurrency int
	Kills       int // workers killed with SIGKILL, spread over the run [Requests/300]
	// WebKills are web tiers killed with SIGKILL, spread over the run,
	// when the system runs several [Requests/1000, at least 1].
	WebKills int
	Scaler   int  // scaler restarts, spread over the run [2]
	Restart  bool // restart the whole system once, half-way
	// Collect bounds the wait for answers by id after the run [2m].
	Collect time.Duration
	// Progress, if set, is told about each event.
	Progress func(event string)
}

// ChaosReport is a run's outcome.
type ChaosReport struct {
	Tally
	Kills, WebKills, ScalerRestarts, Restarts int
	Duration                                  time.Duration
	End                                       EndState
}

// EndState is what the queues and stores hold once the run is over.
type EndState struct {
	// Responses is the backlog of the shared response queue and of the
	// reply queues of the web tiers serving.
	Requests, Responses, DeadLetters int // backlogs
	// DeadReplyQueues are the reply queues left of web tiers that are
	// gone: the sweeper drains and deletes them.
	DeadReplyQueues             []string
	Inputs, Outputs, TableItems int
	Err                         error
}

// RunChaos runs the chaos and tallies it.
func RunChaos(ctx context.Context, cfg ChaosConfig, log *slog.Logger) (ChaosReport, error) {
	if cfg.Requests <= 0 {
		cfg.Requests = len(cfg.Images)
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 100
	}
	if cfg.Kills == 0 {
		cfg.Kills = max(1, cfg.Requests/300)
	}
	if cfg.System.Web <= 1 {
		cfg.WebKills = 0
	} else if cfg.WebKills == 0 {
		cfg.WebKills = max(1, cfg.Requests/1000)
	}
	if cfg.Scaler == 0 {
		cfg.Scaler = 2
	}
	if cfg.Collect <= 0 {
		cfg.Collect = 2 * time.Minute
	}
	if cfg.Progress == nil {
		cfg.Progress = func(string) {}
	}
	files, expected, err := uploads(cfg)
	if err != nil {
		return ChaosReport{}, err
	}
	port, err := freePort()
	if err != nil {
		return ChaosReport{}, err
	}
	cfg.System.Host, cfg.System.Port = "127.0.0.1", port
	sys, err := Start(ctx, cfg.System, log)
	if err != nil {
		return ChaosReport{}, err
	}
	r := &runner{cfg: cfg, sys: sys, log: log}
	defer func() { r.system().Stop(context.WithoutCancel(ctx)) }()

	start := time.Now()
	var done atomic.Int64
	chaosCtx, stopChaos := context.WithCancel(ctx)
	chaosDone := make(chan struct{})
	go func() {
		defer close(chaosDone)
		r.wreak(chaosCtx, &done)
	}()
	rep, err := workload.Run(ctx, workload.Config{
		URL: sys.URL + "/", Files: files, Expected: expected, Concurrency: cfg.Concurrency, Timeout: 5 * time.Minute,
		// Clients wait out the restart rather than race through the
		// run while nothing listens, and send again once a request
		// whose web tier died under it.
		Refused:  time.Minute,
		RetryCut: true,
		Progress: func(_, n, _ int) { done.Store(int64(n)) },
	})
	stopChaos()
	<-chaosDone
	if err != nil {
		return ChaosReport{}, err
	}
	// Requests refused while the system restarted, or cut before the web
	// tier read them (a keep-alive connection closed under a request, as
	// any stopping server does), were never accepted: their clients send
	// them again, as any client would. One cut after the web tier stored
	// it is not re-sent: its client was owed an answer or an id.
	var refused []int
	for i, o := range rep.Outcomes {
		if o.ID == "" && o.Status == 0 && o.Err != nil && !r.accepted(ctx, o.File) {
			refused = append(refused, i)
		}
	}
	if len(refused) > 0 {
		cfg.Progress(fmt.Sprintf("re-sending %d requests the system never accepted (refused or cut during the restart)", len(refused)))
		again := make([]string, len(refused))
		for j, i := range refused {
			again[j] = files[i]
		}
		rep2, err := workload.Run(ctx, workload.Config{URL: sys.URL + "/", Files: again, Expected: expected, Concurrency: cfg.Concurrency, Timeout: 5 * time.Minute, RetryCut: true})
		if err != nil {
			return ChaosReport{}, err
		}
		for j, i := range refused {
			rep.Outcomes[i] = rep2.Outcomes[j]
		}
	}
	fates := r.collect(ctx, rep.Outcomes, expected)
	out := ChaosReport{Tally: Count(fates), Kills: r.kills, WebKills: r.webKills, ScalerRestarts: r.scalerRestarts, Restarts: r.restarts, Duration: time.Since(start)}
	out.End = r.endState(ctx)
	return out, nil
}

type runner struct {
	cfg ChaosConfig
	log *slog.Logger

	mu                                        sync.Mutex
	sys                                       *System
	kills, webKills, scalerRestarts, restarts int
}

func (r *runner) system() *System {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sys
}

// wreak spreads the kills, scaler restarts and the system restart over
// the run, by the number of requests answered so far.
func (r *runner) wreak(ctx context.Context, done *atomic.Int64) {
	n := int64(r.cfg.Requests)
	var events []func(context.Context)
	var at []int64
	for k := range r.cfg.Kills {
		at, events = append(at, n*int64(k+1)/int64(r.cfg.Kills+1)), append(events, r.kill)
	}
	for k := range r.cfg.WebKills {
		// (3k+1)/(3W+1) is never 1/2: no tier is killed at the moment
		// the whole system restarts.
		at, events = append(at, n*int64(3*k+1)/int64(3*r.cfg.WebKills+1)), append(events, r.killWeb)
	}
	for k := range r.cfg.Scaler {
		at, events = append(at, n*int64(2*k+1)/int64(2*r.cfg.Scaler+1)), append(events, r.restartScaler)
	}
	if r.cfg.Restart {
		at, events = append(at, n/2), append(events, r.restart)
	}
	fired := make([]bool, len(events))
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for i, e := range events {
			if !fired[i] && done.Load() >= at[i] {
				fired[i] = true
				e(ctx)
			}
		}
	}
}

// kill ends a busy worker with SIGKILL, as a crash would.
func (r *runner) kill(ctx context.Context) {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && ctx.Err() == nil; time.Sleep(10 * time.Millisecond) {
		sys := r.system()
		instances, _ := sys.Fleet.List(ctx)
		var busy []string
		for _, in := range instances {
			if in.State == events.Running && !in.Idle {
				busy = append(busy, in.Name)
			}
		}
		if len(busy) == 0 {
			continue
		}
		name := busy[rand.IntN(len(busy))]
		if sys.Fleet.Kill(name) == nil {
			r.mu.Lock()
			r.kills++
			r.mu.Unlock()
			r.cfg.Progress("killed " + name + " with SIGKILL")
			return
		}
	}
}

// killWeb ends one of the web tiers with SIGKILL, as an instance's crash
// would: its open connections are cut, and another tier takes its place
// under a new id.
func (r *runner) killWeb(context.Context) {
	sys := r.system()
	var live []int
	for slot, t := range sys.WebTiers() {
		select {
		case <-t.Done(): // dead already, its successor on its way
		default:
			live = append(live, slot)
		}
	}
	if len(live) == 0 {
		return
	}
	t := sys.KillWebTier(live[rand.IntN(len(live))])
	r.mu.Lock()
	r.webKills++
	r.mu.Unlock()
	r.cfg.Progress("killed " + t.String() + " with SIGKILL")
}

func (r *runner) restartScaler(ctx context.Context) {
	r.system().RestartScaler(ctx)
	r.mu.Lock()
	r.scalerRestarts++
	r.mu.Unlock()
	r.cfg.Progress("restarted the scaler")
}

// restart stops the whole system as Ctrl-C does and starts it again on
// the same data directory and port.
func (r *runner) restart(ctx context.Context) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cfg.Progress("stopping the whole system")
	if _, err := r.sys.Stop(context.WithoutCancel(ctx)); err != nil {
		r.log.Warn("stopping for the restart", "err", err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		sys, err := Start(context.WithoutCancel(ctx), r.cfg.System, r.log)
		if err == nil {
			r.sys = sys
			r.restarts++
			r.cfg.Progress("started the whole system again on the same data")
			return
		}
		if time.Now().After(deadline) {
			r.log.Error("restarting the system", "err", err)
			return
		}
	}
}

// accepted reports whether the web tier stored the upload named name.
func (r *runner) accepted(ctx context.Context, name string) bool {
	_, err := r.system().Backends.Inputs.Get(ctx, events.ObjectKey(name))
	return err == nil
}

// collect turns each outcome into what its client finally learned,
// asking /results/{id} for the requests whose answer was not a label.
func (r *runner) collect(ctx context.Context, outcomes []workload.Outcome, expected map[string]string) []Fate {
	fates := make([]Fate, len(outcomes))
	deadline := time.Now().Add(r.cfg.Collect)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 20)
	for i, o := range outcomes {
		f := Fate{Stem: o.Stem, ID: o.ID, Want: expected[o.Stem], Retried: o.Retried, Cached: o.Cached}
		switch {
		case o.Err == nil:
			f.Answered, f.Label = true, o.Label
			if o.Misrouted {
				f.Label = "(misrouted) " + o.Label
			}
		case o.ID == "":
			// Cut before the web tier said an id: the request may have
			// been queued, and its client cannot ask for it.
			f.Lost, f.Failure = true, "no answer and no id: "+shortErr(o.Err)
		case o.Status == http.StatusServiceUnavailable || o.Status == http.StatusGatewayTimeout:
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				fates[i] = r.byID(ctx, f, deadline)
			}()
			continue
		default:
			f.Failure = fmt.Sprintf("%d %s", o.Status, firstLine(o.Answer))
		}
		fates[i] = f
	}
	wg.Wait()
	return fates
}

// byID polls GET /results/{id} until it has an answer or a failure, or the
// deadline passes.
func (r *runner) byID(ctx context.Context, f Fate, deadline time.Time) Fate {
	for ctx.Err() == nil {
		status, body, err := get(ctx, r.system().URL+"/results/"+f.ID)
		switch {
		case err == nil && status == http.StatusOK:
			var res struct{ Label string }
			if err := json.Unmarshal(body, &res); err != nil || res.Label == "" {
				f.Lost, f.Failure = true, "unreadable /results answer: "+firstLine(string(body))
				return f
			}
			f.Answered, f.ByID, f.Label = true, true, res.Label
			return f
		case err == nil && status != http.StatusAccepted && status != http.StatusNotFound && status < 500:
			f.Failure = fmt.Sprintf("%d %s (from /results)", status, firstLine(string(body)))
			return f
		}
		if time.Now().After(deadline) {
			why := fmt.Sprintf("GET /results/%s still %d after the run", f.ID, status)
			if err != nil {
				why = "GET /results: " + shortErr(err)
			}
			f.Lost, f.Failure = true, why
			return f
		}
		time.Sleep(500 * time.Millisecond)
	}
	f.Lost, f.Failure = true, "stopped before collecting"
	return f
}

func get(ctx context.Context, url string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, body, err
}

// endState waits (up to a minute, plus the reply queues' grace) for the
// queues to empty and the dead web tiers' reply queues to go, and reads
// what the system holds.
func (r *runner) endState(ctx context.Context) EndState {
	sys := r.system()
	b := sys.Backends
	var st EndState
	for deadline := time.Now().Add(time.Minute + r.cfg.System.ReplyQueueGrace); ; time.Sleep(250 * time.Millisecond) {
		req, err1 := b.Requests.Counts(ctx)
		resp, err2 := b.Responses.Counts(ctx)
		dl, err3 := b.RequestDeadLetters.Counts(ctx)
		st.Requests, st.Responses, st.DeadLetters = req.Backlog(), resp.Backlog(), dl.Backlog()
		replies, dead, err4 := sys.ReplyQueues(ctx)
		st.Responses += replies
		st.DeadReplyQueues = dead
		st.Err = errors.Join(err1, err2, err3, err4)
		if st.Err != nil || (st.Requests == 0 && st.Responses == 0 && len(dead) == 0) || time.Now().After(deadline) {
			break
		}
	}
	in, err1 := b.Inputs.List(ctx)
	out, err2 := b.Outputs.List(ctx)
	st.Inputs, st.Outputs = len(in), len(out)
	var err3 error
	if t, ok := b.Table.(*embedded.Table); ok {
		st.TableItems, err3 = t.Len(ctx)
	}
	st.Err = errors.Join(st.Err, err1, err2, err3)
	return st
}

// uploads names each request's file uniquely, so that no answer comes
// from the results table: c00042_test_042.jpg is test_042.jpg's bytes.
func uploads(cfg ChaosConfig) ([]string, map[string]string, error) {
	if len(cfg.Images) == 0 {
		return nil, nil, errors.New("chaos: no images")
	}
	dir := filepath.Join(cfg.System.Backend.DataDir, "chaos-uploads")
	if err := os.RemoveAll(dir); err != nil {
		return nil, nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, err
	}
	files := make([]string, cfg.Requests)
	expected := map[string]string{}
	for i := range files {
		src := cfg.Images[i%len(cfg.Images)]
		abs, err := filepath.Abs(src)
		if err != nil {
			return nil, nil, err
		}
		name := fmt.Sprintf("c%05d_%s", i, filepath.Base(src))
		files[i] = filepath.Join(dir, name)
		if err := os.Symlink(abs, files[i]); err != nil {
			return nil, nil, fmt.Errorf("chaos: naming uploads: %w", err)
		}
		stem, _, _ := strings.Cut(filepath.Base(src), ".")
		if want, ok := cfg.Expected[stem]; ok {
			newStem, _, _ := strings.Cut(name, ".")
			expected[newStem] = want
		}
	}
	return files, expected, nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	if len(line) > 120 {
		line = line[:120] + "…"
	}
	return line
}

func shortErr(err error) string {
	if err == nil {
		return ""
	}
	return firstLine(err.Error())
}

// Print writes the report.
func (r ChaosReport) Print(w io.Writer) {
	fmt.Fprintf(w, "chaos: %d requests in %v; %d workers and %d web tiers killed with SIGKILL, scaler restarted %d×, whole system restarted %d×\n",
		r.Sent, r.Duration.Round(time.Millisecond), r.Kills, r.WebKills, r.ScalerRestarts, r.Restarts)
	r.Tally.Print(w)
	e := r.End
	fmt.Fprintf(w, "end state: request queue %d, response queues %d, dead letters %d; reply queues of dead web tiers left %d; input bucket %d objects, output bucket %d, results table %d items\n",
		e.Requests, e.Responses, e.DeadLetters, len(e.DeadReplyQueues), e.Inputs, e.Outputs, e.TableItems)
	if e.Err != nil {
		fmt.Fprintf(w, "end state incomplete: %v\n", e.Err)
	}
}

// OK is true when nothing was wrong or lost, the queues drained and the
// dead web tiers' reply queues are gone.
func (r ChaosReport) OK() bool {
	return r.Tally.OK() && r.End.Err == nil && r.End.Requests == 0 && r.End.Responses == 0 && len(r.End.DeadReplyQueues) == 0
}
