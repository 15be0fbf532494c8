package scaler_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	awsevents "github.com/aws/aws-lambda-go/events"
	sdk "github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/lambda"

	"github.com/surgeml/surge/events"
	"github.com/surgeml/surge/internal/aws"
	"github.com/surgeml/surge/internal/moto"
	"github.com/surgeml/surge/internal/scaler"
)

// The handler runs against moto_server on loopback.
func TestMain(m *testing.M) { moto.Main(m) }

// scheduledEvent is EventBridge's scheduled-event payload as AWS documents
// it, with the time set to when.
func scheduledEvent(t *testing.T, when time.Time) awsevents.EventBridgeEvent {
	t.Helper()
	payload := fmt.Sprintf(`{
  "version": "0",
  "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
  "detail-type": "Scheduled Event",
  "source": "aws.events",
  "account": "123456789012",
  "time": %q,
  "region": "us-east-1",
  "resources": ["arn:aws:events:us-east-1:123456789012:rule/surge-scaler"],
  "detail": {}
}`, when.UTC().Format(time.RFC3339))
	var ev awsevents.EventBridgeEvent
	if err := json.Unmarshal([]byte(payload), &ev); err != nil {
		t.Fatal(err)
	}
	return ev
}

// eventNow is a scheduled event for this moment, which a handler whose tick is
// longer than its window reconciles once.
func eventNow(t *testing.T) awsevents.EventBridgeEvent {
	t.Helper()
	return scheduledEvent(t, time.Now())
}

// onceTick makes a handler wired from its environment reconcile once per
// event: the first reconcile, and no tick within the window.
const onceTick = "1h"

// onTheSecond waits for the next whole second and returns a scheduled
// event for it: EventBridge's times are whole seconds, and an invocation
// runs its window from the event's time.
func onTheSecond(t *testing.T) awsevents.EventBridgeEvent {
	t.Helper()
	start := time.Now().Truncate(time.Second).Add(time.Second)
	time.Sleep(time.Until(start))
	return scheduledEvent(t, start)
}

// tokensByName returns the client tokens of the fleet's instances,
// terminated ones included, in launch order per name.
func (r *rig) tokensByName(t *testing.T) map[string][]string {
	t.Helper()
	out, err := r.clients.EC2.DescribeInstances(context.Background(), &ec2.DescribeInstancesInput{
		Filters: []types.Filter{{Name: sdk.String("tag:" + aws.TagFleet), Values: []string{r.name}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var all []types.Instance
	for _, res := range out.Reservations {
		all = append(all, res.Instances...)
	}
	slices.SortStableFunc(all, func(a, b types.Instance) int { return sdk.ToTime(a.LaunchTime).Compare(sdk.ToTime(b.LaunchTime)) })
	tokens := map[string][]string{}
	for _, in := range all {
		for _, tag := range in.Tags {
			if sdk.ToString(tag.Key) == "Name" {
				tokens[sdk.ToString(tag.Value)] = append(tokens[sdk.ToString(tag.Value)], sdk.ToString(in.ClientToken))
			}
		}
	}
	return tokens
}

var serial atomic.Int32

type rig struct {
	clients *aws.Clients
	queue   *aws.Queue
	fleet   *aws.Fleet
	name    string
}

func newRig(t *testing.T, backlog int) *rig {
	t.Helper()
	ctx := context.Background()
	c := moto.Clients(t)
	name := fmt.Sprintf("lambda-%d", serial.Add(1))
	moto.LaunchTemplate(t, c, name+"-worker")
	q, err := aws.CreateQueue(ctx, c.SQS, aws.QueueSpec{Name: name + "-req-queue", Visibility: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for range backlog {
		if err := q.Send(ctx, []byte("{}")); err != nil {
			t.Fatal(err)
		}
	}
	return &rig{clients: c, queue: q, fleet: aws.NewFleet(c.EC2, name, name+"-worker"), name: name}
}

// env is the environment of the rig's scaler function, with more
// variables, in pairs, on top.
func (r *rig) env(more ...string) map[string]string {
	env := map[string]string{
		"SURGE_REQUEST_QUEUE_URL": r.queue.URL(), "SURGE_LAUNCH_TEMPLATE": r.name + "-worker", "SURGE_FLEET": r.name,
	}
	for i := 0; i+1 < len(more); i += 2 {
		env[more[i]] = more[i+1]
	}
	return env
}

// handler is one Lambda execution environment's handler: its own scaler
// and its own view of the fleet, as another process would have. moto
// answers a launch at once, so launches may start until the window's
// last moment.
func (r *rig) handler(window, tick time.Duration, logs, metrics *syncBuffer) *scaler.Handler {
	log := slog.New(slog.NewJSONHandler(logs, nil))
	s := scaler.New(scaler.Config{Max: 19}, r.queue, aws.NewFleet(r.clients.EC2, r.name, r.name+"-worker"), log)
	return scaler.NewHandler(scaler.LambdaConfig{Tick: tick, Window: window, LaunchAllowance: time.Millisecond, Fleet: r.name}, s, log, metrics)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(s.b.Bytes()))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("not a JSON line: %q", sc.Text())
		}
		out = append(out, m)
	}
	return out
}

func TestScheduledInvocation(t *testing.T) {
	r := newRig(t, 25) // 1 + ⌈16/5⌉ = 5 workers
	var logs, metrics syncBuffer
	// Scheduled events carry whole seconds; invoke on one, as EventBridge
	// does.
	start := time.Now().Truncate(time.Second).Add(time.Second)
	time.Sleep(time.Until(start))
	sum, err := r.handler(2*time.Second, 500*time.Millisecond, &logs, &metrics).Handle(context.Background(), scheduledEvent(t, start))
	if err != nil {
		t.Fatal(err)
	}
	// Ticks at 0, 0.5, 1 and 1.5 s of the 2 s window.
	if took := time.Since(start); took < 1400*time.Millisecond || took > 5*time.Second {
		t.Errorf("invocation took %v for a 2s window", took)
	}
	if sum.Reconciles != 4 || sum.Failures != 0 || len(sum.Launched) != 5 || len(sum.Terminated) != 0 {
		t.Fatalf("summary %+v", sum)
	}
	if in, _ := r.fleet.List(context.Background()); len(in) != 5 {
		t.Fatalf("%d instances, want 5", len(in))
	}
	decisions := 0
	for _, l := range logs.lines(t) {
		if l["msg"] == "decision" {
			decisions++
			for _, k := range []string{"backlog", "desired", "running", "launched", "terminated"} {
				if _, ok := l[k]; !ok {
					t.Errorf("decision log lacks %q: %v", k, l)
				}
			}
		}
	}
	if decisions != 4 {
		t.Errorf("%d decisions logged, want 4", decisions)
	}
	emf := metrics.lines(t)
	if len(emf) != 4 {
		t.Fatalf("%d metric lines, want 4", len(emf))
	}
	last := emf[3]
	cw := last["_aws"].(map[string]any)["CloudWatchMetrics"].([]any)[0].(map[string]any)
	if cw["Namespace"] != "Surge" || last["Backlog"].(float64) != 25 || last["RunningWorkers"].(float64) != 5 || last["Fleet"] != r.name {
		t.Fatalf("metric line %v", last)
	}
}

// An event whose minute is over (a retry Lambda sends later, a delivery
// held up) is another invocation's minute: it is not reconciled at all.
func TestStaleAndForeignEvents(t *testing.T) {
	r := newRig(t, 1)
	var logs, metrics syncBuffer
	h := r.handler(time.Minute, time.Hour, &logs, &metrics)
	for _, late := range []time.Duration{61 * time.Second, 10 * time.Minute} {
		sum, err := h.Handle(context.Background(), scheduledEvent(t, time.Now().Add(-late)))
		if err != nil || sum.Reconciles != 0 {
			t.Fatalf("an event %v old: %+v, %v", late, sum, err)
		}
	}
	if n := len(r.tokensByName(t)); n != 0 {
		t.Fatalf("stale events launched %d instances", n)
	}
	if n := strings.Count(logs.b.String(), "event outside its window"); n != 2 {
		t.Fatalf("%d stale events logged, want 2:\n%s", n, logs.b.String())
	}
	// One delivered late but within its minute still decides.
	if sum, err := h.Handle(context.Background(), scheduledEvent(t, time.Now().Add(-50*time.Second))); err != nil || len(sum.Launched) != 1 {
		t.Fatalf("an event 50s old: %+v, %v", sum, err)
	}
	ev := eventNow(t)
	ev.Source, ev.DetailType = "aws.s3", "Object Created"
	if _, err := h.Handle(context.Background(), ev); err == nil || !strings.Contains(err.Error(), "not a scheduled event") {
		t.Fatalf("foreign event: %v", err)
	}
}

// The invocation stops before the Lambda deadline.
func TestStopsBeforeDeadline(t *testing.T) {
	r := newRig(t, 0)
	var logs, metrics syncBuffer
	h := scaler.NewHandler(scaler.LambdaConfig{Tick: 200 * time.Millisecond, Window: time.Minute, Margin: 500 * time.Millisecond, Fleet: r.name},
		scaler.New(scaler.Config{Max: 19}, r.queue, r.fleet, slog.New(slog.DiscardHandler)), slog.New(slog.NewJSONHandler(&logs, nil)), &metrics)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	if _, err := h.Handle(ctx, scheduledEvent(t, start)); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 1800*time.Millisecond {
		t.Fatalf("ran %v into a 2s deadline with a 500ms margin", took)
	}
}

// Two invocations for the same schedule at once (EventBridge delivers at
// least once) decide the same launches with the same EC2 client tokens,
// so EC2 makes each instance once. moto does not honour client tokens, so
// what is checked is that every instance of a name carries one token.
func TestOverlappingInvocationsShareClientTokens(t *testing.T) {
	r := newRig(t, 40)
	ev := scheduledEvent(t, time.Now())
	var wg sync.WaitGroup
	for range 2 {
		var logs, metrics syncBuffer
		h := r.handler(1500*time.Millisecond, 500*time.Millisecond, &logs, &metrics)
		wg.Go(func() {
			if _, err := h.Handle(context.Background(), ev); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	tokens := r.tokensByName(t)
	if len(tokens) != 8 { // 1 + ⌈31/5⌉
		t.Fatalf("names launched: %d, want 8", len(tokens))
	}
	for name, ts := range tokens {
		if len(slices.Compact(ts)) != 1 {
			t.Errorf("%s was launched under different client tokens %v: EC2 would make it twice", name, ts)
		}
	}
}

// The event is the launch scope: handlers in different processes given
// the same event derive the same tokens, even one after the other; the
// next event derives others, so a token never comes back the same day.
func TestEventIsTheLaunchScope(t *testing.T) {
	r := newRig(t, 1)
	ctx := context.Background()
	// Within a long window and a longer tick, one reconcile each.
	at := time.Now().Add(-2 * time.Minute)
	first, next := scheduledEvent(t, at), scheduledEvent(t, at.Add(time.Minute))
	next.ID = "2b6c05a5-0c1c-4b4f-9a53-6f1c1b0ee2a1"
	for _, ev := range []awsevents.EventBridgeEvent{first, next, first} {
		var logs, metrics syncBuffer
		if sum, err := r.handler(10*time.Minute, time.Hour, &logs, &metrics).Handle(ctx, ev); err != nil || len(sum.Launched) != 1 {
			t.Fatalf("%+v, %v", sum, err)
		}
		if err := r.fleet.Drain(ctx, []string{"app-tier-instance-1"}); err != nil {
			t.Fatal(err)
		}
	}
	tokens := r.tokensByName(t)["app-tier-instance-1"]
	if len(tokens) != 3 || tokens[0] != tokens[2] || tokens[0] == tokens[1] {
		t.Fatalf("tokens for events 1, 2, 1: %v", tokens)
	}
}

// fakeQuota is a named fake of an account's vCPU quota, which moto lacks:
// the fleet launches into moto until it holds limit instances, then EC2's
// refusal is what Launch returns.
type fakeQuota struct {
	*aws.Fleet
	mu    sync.Mutex
	limit int
}

func (q *fakeQuota) setLimit(n int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.limit = n
}

func (q *fakeQuota) Launch(ctx context.Context, names []string) error {
	q.mu.Lock()
	limit := q.limit
	q.mu.Unlock()
	have, err := q.List(ctx)
	if err != nil {
		return err
	}
	room := max(0, limit-len(have))
	if room >= len(names) {
		return q.Fleet.Launch(ctx, names)
	}
	if err := q.Fleet.Launch(ctx, names[:room]); err != nil {
		return err
	}
	return &events.CapacityError{Code: "VcpuLimitExceeded", Message: "You have requested more vCPU capacity than your current vCPU limit allows", Launched: names[:room]}
}

// episodeLines returns the metric lines that count a launch-ceiling
// episode.
func episodeLines(t *testing.T, metrics *syncBuffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range metrics.lines(t) {
		if _, ok := l["LaunchCeilingEpisodes"]; ok {
			out = append(out, l)
		}
	}
	return out
}

// At the quota the fleet holds, the metric counts the episode once
// however many ticks it lasts, and the fleet grows when the quota does.
func TestLaunchCeilingMetricOncePerEpisode(t *testing.T) {
	r := newRig(t, 40) // 8 workers wanted
	var logs, metrics syncBuffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	quota := &fakeQuota{Fleet: aws.NewFleet(r.clients.EC2, r.name, r.name+"-worker"), limit: 3}
	s := scaler.New(scaler.Config{Max: 19, CapacityBackoff: 150 * time.Millisecond, CapacityBackoffMax: 300 * time.Millisecond}, r.queue, quota, log)
	h := scaler.NewHandler(scaler.LambdaConfig{Tick: 100 * time.Millisecond, Window: time.Second, LaunchAllowance: time.Millisecond, Fleet: r.name}, s, log, &metrics)
	ctx := context.Background()

	sum, err := h.Handle(ctx, onTheSecond(t))
	if err != nil || sum.Failures != 0 || sum.Reconciles < 5 {
		t.Fatalf("%+v, %v", sum, err)
	}
	if in, _ := r.fleet.List(ctx); len(in) != 3 {
		t.Fatalf("%d instances at a quota of 3", len(in))
	}
	episodes := episodeLines(t, &metrics)
	if len(episodes) != 1 {
		t.Fatalf("%d episode metrics over %d ticks, want 1", len(episodes), sum.Reconciles)
	}
	e := episodes[0]
	cw := e["_aws"].(map[string]any)["CloudWatchMetrics"].([]any)
	if e["Code"] != "VcpuLimitExceeded" || e["LaunchCeilingEpisodes"].(float64) != 1 || e["Fleet"] != r.name || len(cw) != 2 {
		t.Fatalf("episode metric line %v", e)
	}
	if got := fmt.Sprint(cw[1].(map[string]any)["Dimensions"]); got != "[[Fleet] [Fleet Code]]" {
		t.Fatalf("episode dimensions %s", got)
	}
	// One line of sizes per decision made (a reconcile the window's end
	// cuts off on a slow machine makes none).
	decisions := 0
	for _, l := range logs.lines(t) {
		if l["msg"] == "decision" {
			decisions++
		}
	}
	if n := len(metrics.lines(t)); n != decisions || decisions < sum.Reconciles-1 {
		t.Fatalf("%d metric lines for %d decisions in %d ticks", n, decisions, sum.Reconciles)
	}

	// The quota is raised: the warm handler's next invocation grows the
	// fleet, announcing nothing new.
	quota.setLimit(100)
	if _, err := h.Handle(ctx, onTheSecond(t)); err != nil {
		t.Fatal(err)
	}
	if in, _ := r.fleet.List(ctx); len(in) != 8 {
		t.Fatalf("%d instances after the quota was raised", len(in))
	}
	if n := len(episodeLines(t, &metrics)); n != 1 {
		t.Fatalf("%d episode metrics after the ceiling lifted", n)
	}
}

func TestFromEnv(t *testing.T) {
	r := newRig(t, 1)
	env := map[string]string{
		"SURGE_REQUEST_QUEUE_URL": r.queue.URL(),
		"SURGE_LAUNCH_TEMPLATE":   r.name + "-worker",
		"SURGE_FLEET":             r.name,
		"SURGE_MAX_WORKERS":       "3",
		"SURGE_BOOT_DEADLINE":     "2m",
		"SURGE_CAPACITY_BACKOFF":  "10s",
		"SURGE_TICK":              onceTick,
	}
	getenv := func(k string) string { return env[k] }
	ctx := context.Background()
	var out syncBuffer
	h, err := scaler.FromEnv(ctx, getenv, &out)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := h.Handle(ctx, eventNow(t))
	if err != nil || !slices.Equal(sum.Launched, []string{"app-tier-instance-1"}) {
		t.Fatalf("%+v, %v", sum, err)
	}
	// Log lines and metrics share the writer, as on Lambda.
	var decisions, emf int
	for _, l := range out.lines(t) {
		if l["msg"] == "decision" && l["fleet"] == r.name {
			decisions++
		}
		if _, ok := l["_aws"]; ok {
			emf++
		}
	}
	if decisions != 1 || emf != 1 {
		t.Fatalf("%d decisions and %d metric lines", decisions, emf)
	}

	for key, bad := range map[string]string{
		"SURGE_MAX_WORKERS":      "many",
		"SURGE_BOOT_DEADLINE":    "5 minutes",
		"SURGE_CAPACITY_BACKOFF": "-1s",
		"SURGE_TICK":             "often",
	} {
		good := env[key]
		env[key] = bad
		if _, err := scaler.FromEnv(ctx, getenv, io.Discard); err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%s=%s: %v", key, bad, err)
		}
		env[key] = good
	}
	env["SURGE_MAX_WORKERS"] = "0"
	if _, err := scaler.FromEnv(ctx, getenv, io.Discard); err == nil {
		t.Error("a cap of 0 was accepted")
	}
	delete(env, "SURGE_FLEET")
	if _, err := scaler.FromEnv(ctx, getenv, io.Discard); err == nil {
		t.Error("no fleet was accepted")
	}
}

// The stack's destroy stops the scaler by setting its reserved concurrency
// to 0; an invocation already running then launches nothing.
func TestStoppedScalerLaunchesNothing(t *testing.T) {
	r := newRig(t, 5)
	ctx := context.Background()
	fn := r.name + "-scaler"
	moto.Function(t, r.clients, fn)
	env := r.env("AWS_LAMBDA_FUNCTION_NAME", fn, "SURGE_TICK", onceTick)
	var out syncBuffer
	h, err := scaler.FromEnv(ctx, func(k string) string { return env[k] }, &out)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lambda.NewFromConfig(r.clients.Config).PutFunctionConcurrency(ctx, &lambda.PutFunctionConcurrencyInput{
		FunctionName: &fn, ReservedConcurrentExecutions: sdk.Int32(0),
	}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := h.Handle(ctx, eventNow(t)); err != nil {
			t.Fatal(err)
		}
	}
	if in, err := r.fleet.List(ctx); err != nil || len(in) != 0 {
		t.Fatalf("a stopped scaler launched %v (%v)", in, err)
	}
	if n := strings.Count(out.b.String(), `"msg":"the scaler is stopped`); n != 1 {
		t.Fatalf("said it was stopped %d times, want once:\n%s", n, out.b.String())
	}
	// Started again (concurrency no longer 0), it launches.
	if _, err := lambda.NewFromConfig(r.clients.Config).DeleteFunctionConcurrency(ctx, &lambda.DeleteFunctionConcurrencyInput{FunctionName: &fn}); err != nil {
		t.Fatal(err)
	}
	if sum, err := h.Handle(ctx, eventNow(t)); err != nil || len(sum.Launched) != 1 {
		t.Fatalf("%+v, %v", sum, err)
	}
	if in, err := r.fleet.List(ctx); err != nil || len(in) != 1 {
		t.Fatalf("restarted scaler: %v (%v)", in, err)
	}
}

// With SURGE_POOL_SIZE the handler fills the warm pool while the fleet is
// idle, and leaves it alone while there is work to scale for.
func TestHandlerKeepsThePoolWhenIdle(t *testing.T) {
	ctx := context.Background()
	handler := func(r *rig) *scaler.Handler {
		t.Helper()
		env := map[string]string{
			"SURGE_REQUEST_QUEUE_URL": r.queue.URL(), "SURGE_LAUNCH_TEMPLATE": r.name + "-worker", "SURGE_FLEET": r.name,
			"SURGE_POOL_SIZE": "2", "SURGE_TICK": onceTick,
		}
		h, err := scaler.FromEnv(ctx, func(k string) string { return env[k] }, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}

	busy := newRig(t, 3)
	sum, err := handler(busy).Handle(ctx, eventNow(t))
	if err != nil || !slices.Equal(sum.Launched, []string{"app-tier-instance-1"}) || len(sum.PoolLaunched) != 0 {
		t.Fatalf("with a backlog: %+v, %v", sum, err)
	}

	idle := newRig(t, 0)
	h := handler(idle)
	sum, err = h.Handle(ctx, eventNow(t))
	if err != nil || len(sum.Launched) != 0 || !slices.Equal(sum.PoolLaunched, []string{"app-tier-pool-1", "app-tier-pool-2"}) {
		t.Fatalf("idle: %+v, %v", sum, err)
	}
	if in, err := idle.fleet.List(ctx); err != nil || len(in) != 0 {
		t.Fatalf("the pool's instances show in the fleet: %v (%v)", in, err)
	}
	// The pool is filling: nothing more to launch, and the fleet is still idle.
	sum, err = h.Handle(ctx, eventNow(t))
	if err != nil || len(sum.Launched)+len(sum.PoolLaunched) != 0 {
		t.Fatalf("idle again: %+v, %v", sum, err)
	}
}

// A stopped scaler fills no pool either.
func TestStoppedScalerWarmsNothing(t *testing.T) {
	r := newRig(t, 0)
	ctx := context.Background()
	fn := r.name + "-scaler"
	moto.Function(t, r.clients, fn)
	env := map[string]string{
		"SURGE_REQUEST_QUEUE_URL": r.queue.URL(), "SURGE_LAUNCH_TEMPLATE": r.name + "-worker", "SURGE_FLEET": r.name,
		"SURGE_POOL_SIZE": "2", "AWS_LAMBDA_FUNCTION_NAME": fn, "SURGE_TICK": onceTick,
	}
	h, err := scaler.FromEnv(ctx, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lambda.NewFromConfig(r.clients.Config).PutFunctionConcurrency(ctx, &lambda.PutFunctionConcurrencyInput{
		FunctionName: &fn, ReservedConcurrentExecutions: sdk.Int32(0),
	}); err != nil {
		t.Fatal(err)
	}
	if sum, err := h.Handle(ctx, eventNow(t)); err != nil || len(sum.PoolLaunched) != 0 {
		t.Fatalf("stopped: %+v, %v", sum, err)
	}
	if n := len(r.tokensByName(t)); n != 0 {
		t.Fatalf("a stopped scaler launched %d instances", n)
	}
}

// throughSlowEC2 is the options that point a handler's clients at a proxy
// in front of moto whose RunInstances takes delay to answer, as EC2's
// takes seconds.
func throughSlowEC2(t *testing.T, delay time.Duration) []func(*awsconfig.LoadOptions) error {
	t.Helper()
	p := moto.Endpoint(t, moto.ProxyConfig{RunInstancesDelay: delay})
	return []func(*awsconfig.LoadOptions) error{awsconfig.WithBaseEndpoint(p.URL())}
}

// liveByName counts the fleet's instances that are not terminated, by
// Name tag.
func (r *rig) liveByName(t *testing.T) map[string]int {
	t.Helper()
	out, err := r.clients.EC2.DescribeInstances(context.Background(), &ec2.DescribeInstancesInput{Filters: []types.Filter{
		{Name: sdk.String("tag:" + aws.TagFleet), Values: []string{r.name}},
		{Name: sdk.String("instance-state-name"), Values: []string{"pending", "running"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]int{}
	for _, res := range out.Reservations {
		for _, in := range res.Instances {
			for _, tag := range in.Tags {
				if sdk.ToString(tag.Key) == "Name" {
					byName[sdk.ToString(tag.Value)]++
				}
			}
		}
	}
	return byName
}

// Consecutive minutes' invocations, each in its own execution
// environment, while every launch takes long enough that one minute's
// launches cannot all fit in it: a reconcile still launching when its
// minute ends would launch names the next minute's invocation (deciding
// at once, under other client tokens, from what DescribeInstances lists)
// launches too. Each name runs once, and the fleet stays within its cap.
func TestMinutesNeverLaunchANameTwice(t *testing.T) {
	// A minute of 3 s, launches starting only in its first 1.5 s, each
	// answered 0.8 s after it starts: two per minute.
	const capacity, window = 6, 3 * time.Second
	r := newRig(t, 40) // wants more than the cap
	opts := throughSlowEC2(t, 800*time.Millisecond)
	env := r.env("SURGE_MAX_WORKERS", strconv.Itoa(capacity), "SURGE_WINDOW", window.String(), "SURGE_TICK", "1s",
		"SURGE_LAUNCH_ALLOWANCE", "1500ms")
	first := onTheSecond(t)
	var wg sync.WaitGroup
	logs := make([]*syncBuffer, 3)
	for i := range logs {
		logs[i] = &syncBuffer{}
		ev := first
		ev.ID = fmt.Sprintf("%s-%d", first.ID, i)
		ev.Time = first.Time.Add(time.Duration(i) * window)
		wg.Go(func() {
			time.Sleep(time.Until(ev.Time)) // EventBridge invokes on the minute
			h, err := scaler.FromEnv(context.Background(), func(k string) string { return env[k] }, logs[i], opts...)
			if err != nil {
				t.Error(err)
				return
			}
			// Lambda's deadline: the stack's timeout outlasts the window.
			ctx, cancel := context.WithDeadline(context.Background(), ev.Time.Add(window+10*time.Second))
			defer cancel()
			h.Handle(ctx, ev)
		})
	}
	wg.Wait()
	live := r.liveByName(t)
	total := 0
	for name, n := range live {
		total += n
		if n > 1 {
			t.Errorf("%s runs %d times", name, n)
		}
	}
	if total > capacity {
		t.Errorf("%d instances run, over the cap of %d: %v", total, capacity, live)
	}
	if !strings.Contains(logs[0].b.String(), `"launch_stopped":"too late to start a launch`) {
		t.Error("the first minute's launches all fitted in it: none was left to the next minute")
	}
	if t.Failed() || testing.Verbose() {
		for i, l := range logs {
			t.Logf("invocation %d:\n%s", i, l.b.String())
		}
	}
}

// A scaler stopped while it launches, each launch taking a while, stops
// between one launch and the next: at most the launch under way at the
// stop still adds an instance, not the rest of the decision's.
func TestStopTakesEffectBetweenLaunches(t *testing.T) {
	r := newRig(t, 25) // five workers wanted
	ctx := context.Background()
	fn := r.name + "-scaler"
	moto.Function(t, r.clients, fn)
	env := r.env("AWS_LAMBDA_FUNCTION_NAME", fn, "SURGE_TICK", onceTick)
	var out syncBuffer
	h, err := scaler.FromEnv(ctx, func(k string) string { return env[k] }, &out, throughSlowEC2(t, time.Second)...)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan scaler.Summary, 1)
	go func() {
		sum, err := h.Handle(ctx, eventNow(t))
		if err != nil {
			t.Error(err)
		}
		done <- sum
	}()
	deadline := time.Now().Add(30 * time.Second)
	for len(r.liveByName(t)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no launch within 30 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := lambda.NewFromConfig(r.clients.Config).PutFunctionConcurrency(ctx, &lambda.PutFunctionConcurrencyInput{
		FunctionName: &fn, ReservedConcurrentExecutions: sdk.Int32(0),
	}); err != nil {
		t.Fatal(err)
	}
	sum := <-done
	if n := len(r.liveByName(t)); n > 3 {
		t.Errorf("%d of the 5 wanted launched; stopped after the first, at most the one under way should have followed", n)
	}
	if len(sum.Launched) != len(r.liveByName(t)) {
		t.Errorf("the summary says %v launched; EC2 runs %v", sum.Launched, r.liveByName(t))
	}
	if !strings.Contains(out.b.String(), `"launch_stopped":"the scaler is stopped`) {
		t.Errorf("the decision does not say why launching stopped:\n%s", out.b.String())
	}
}
