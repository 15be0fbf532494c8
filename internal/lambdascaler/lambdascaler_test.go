package lambdascaler_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	awsevents "github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/surgeml/surge/internal/awscfg"
	"github.com/surgeml/surge/internal/awstest"
	"github.com/surgeml/surge/internal/ec2fleet"
	"github.com/surgeml/surge/internal/lambdascaler"
	"github.com/surgeml/surge/internal/scaler"
	"github.com/surgeml/surge/internal/sqsqueue"
)

// The handler runs against moto_server on loopback.
func TestMain(m *testing.M) { awstest.Main(m) }

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

var serial atomic.Int32

type rig struct {
	clients *awscfg.Clients
	queue   *sqsqueue.Queue
	fleet   *ec2fleet.Fleet
	name    string
}

func newRig(t *testing.T, backlog int) *rig {
	t.Helper()
	ctx := context.Background()
	c := awstest.Clients(t)
	name := fmt.Sprintf("lambda-%d", serial.Add(1))
	awstest.LaunchTemplate(t, c, name+"-worker")
	q, err := sqsqueue.Create(ctx, c.SQS, sqsqueue.Spec{Name: name + "-req-queue", Visibility: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for range backlog {
		if err := q.Send(ctx, []byte("{}")); err != nil {
			t.Fatal(err)
		}
	}
	return &rig{clients: c, queue: q, fleet: ec2fleet.New(c.EC2, name, name+"-worker"), name: name}
}

func (r *rig) handler(window, tick time.Duration, logs, metrics *syncBuffer) *lambdascaler.Handler {
	log := slog.New(slog.NewJSONHandler(logs, nil))
	s := scaler.New(scaler.Config{Max: 19}, r.queue, r.fleet, log)
	return lambdascaler.New(lambdascaler.Config{Tick: tick, Window: window, Fleet: r.name}, s, log, metrics)
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

func TestStaleAndForeignEvents(t *testing.T) {
	r := newRig(t, 1)
	var logs, metrics syncBuffer
	h := r.handler(time.Minute, time.Second, &logs, &metrics)
	// A retry delivered long after its schedule reconciles once, at once.
	start := time.Now()
	sum, err := h.Handle(context.Background(), scheduledEvent(t, start.Add(-10*time.Minute)))
	if err != nil || sum.Reconciles != 1 || time.Since(start) > 5*time.Second {
		t.Fatalf("stale event: %+v, %v after %v", sum, err, time.Since(start))
	}
	ev := scheduledEvent(t, time.Now())
	ev.Source, ev.DetailType = "aws.s3", "Object Created"
	if _, err := h.Handle(context.Background(), ev); err == nil || !strings.Contains(err.Error(), "not a scheduled event") {
		t.Fatalf("foreign event: %v", err)
	}
}

// The invocation stops before the Lambda deadline.
func TestStopsBeforeDeadline(t *testing.T) {
	r := newRig(t, 0)
	var logs, metrics syncBuffer
	h := lambdascaler.New(lambdascaler.Config{Tick: 200 * time.Millisecond, Window: time.Minute, Margin: 500 * time.Millisecond, Fleet: r.name},
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
	out, err := r.clients.EC2.DescribeInstances(context.Background(), &ec2.DescribeInstancesInput{
		Filters: []types.Filter{{Name: aws.String("tag:" + ec2fleet.TagFleet), Values: []string{r.name}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	tokens := map[string]map[string]bool{}
	for _, res := range out.Reservations {
		for _, in := range res.Instances {
			name := ""
			for _, tag := range in.Tags {
				if aws.ToString(tag.Key) == "Name" {
					name = aws.ToString(tag.Value)
				}
			}
			if tokens[name] == nil {
				tokens[name] = map[string]bool{}
			}
			tokens[name][aws.ToString(in.ClientToken)] = true
		}
	}
	if len(tokens) != 8 { // 1 + ⌈31/5⌉
		t.Fatalf("names launched: %d, want 8", len(tokens))
	}
	for name, ts := range tokens {
		if len(ts) != 1 {
			t.Errorf("%s was launched under %d different client tokens: EC2 would make it twice", name, len(ts))
		}
	}
}
