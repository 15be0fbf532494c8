package aws_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/surgeml/surge/events"
	"github.com/surgeml/surge/internal/aws"
	"github.com/surgeml/surge/internal/moto"
)

// described returns every instance of the fleet moto knows, terminated
// ones included, by Name tag.
func described(t *testing.T, c *ec2.Client, fleetName string) map[string][]types.Instance {
	t.Helper()
	out, err := c.DescribeInstances(context.Background(), &ec2.DescribeInstancesInput{
		Filters: []types.Filter{{Name: sdk.String("tag:" + aws.TagFleet), Values: []string{fleetName}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string][]types.Instance{}
	for _, r := range out.Reservations {
		for _, in := range r.Instances {
			for _, tag := range in.Tags {
				if sdk.ToString(tag.Key) == "Name" {
					byName[sdk.ToString(tag.Value)] = append(byName[sdk.ToString(tag.Value)], in)
				}
			}
		}
	}
	return byName
}

func launch(t *testing.T, ctx context.Context, f *aws.Fleet, names ...string) {
	t.Helper()
	if err := f.Launch(ctx, names); err != nil {
		t.Fatal(err)
	}
}

// A worker's readiness tag shows in List; so does its launch time.
func TestReadyRoundTrip(t *testing.T) {
	c, f, _ := setup(t)
	ctx := context.Background()
	before := time.Now().Add(-time.Second)
	launch(t, ctx, f, "app-tier-instance-1")
	got := list(t, f)
	if len(got) != 1 || got[0].Ready || got[0].Launched.Before(before.Add(-time.Minute)) || got[0].Launched.After(time.Now().Add(time.Minute)) {
		t.Fatalf("fresh instance: %+v", got)
	}
	if err := aws.MarkReady(ctx, c.EC2, got[0].ID); err != nil {
		t.Fatal(err)
	}
	if got := list(t, f); !got[0].Ready {
		t.Fatalf("after MarkReady: %+v", got[0])
	}
}

// Tokens come from the launch scope: two fleets (two scalers) in one
// scope ask for the same instance; another scope, or no scope at all,
// never does. moto does not honour tokens, so what is compared is the
// token each instance records.
func TestLaunchScopes(t *testing.T) {
	c := moto.Clients(t)
	name := fmt.Sprintf("fleet-%d", serial.Add(1))
	moto.LaunchTemplate(t, c, name+"-worker")
	a, b := aws.NewFleet(c.EC2, name, name+"-worker"), aws.NewFleet(c.EC2, name, name+"-worker")
	minute1 := aws.WithLaunchScope(context.Background(), "event/1")
	launch(t, minute1, a, "app-tier-instance-1", "app-tier-instance-2")
	launch(t, minute1, b, "app-tier-instance-1", "app-tier-instance-2")
	launch(t, aws.WithLaunchScope(context.Background(), "event/2"), a, "app-tier-instance-1")
	launch(t, context.Background(), a, "app-tier-instance-1")
	launch(t, context.Background(), b, "app-tier-instance-1")

	byName := described(t, c.EC2, name)
	tok := func(n string) []string {
		var out []string
		for _, in := range byName[n] {
			out = append(out, sdk.ToString(in.ClientToken))
		}
		slices.Sort(out)
		return out
	}
	one, two := tok("app-tier-instance-1"), tok("app-tier-instance-2")
	if len(two) != 2 || two[0] != two[1] {
		t.Fatalf("one scope, two scalers: tokens %v", two)
	}
	if len(one) != 5 || len(slices.Compact(slices.Clone(one))) != 4 {
		// event/1 twice (shared), event/2, and two scope-less fleets.
		t.Fatalf("tokens for instance 1: %v; want 4 different among 5", one)
	}
	for _, tok := range one {
		if slices.Contains(two, tok) {
			t.Fatalf("two names share token %s", tok)
		}
	}
}

// tokenMemory is a named fake of the one thing moto lacks here: EC2's
// memory of client tokens. RunInstances under a token it has seen answers
// with the instance that token made, in its current state, as EC2
// documents (with staleState, in the state of the first answer, to check
// that an ended instance is recognised from DescribeInstances too);
// everything else is moto's.
type tokenMemory struct {
	*ec2.Client
	staleState bool

	mu      sync.Mutex
	made    map[string]types.Instance
	replays int
	tokens  []string // every RunInstances token, in order
}

func (m *tokenMemory) RunInstances(ctx context.Context, in *ec2.RunInstancesInput, opts ...func(*ec2.Options)) (*ec2.RunInstancesOutput, error) {
	token := sdk.ToString(in.ClientToken)
	m.mu.Lock()
	first, seen := m.made[token]
	m.tokens = append(m.tokens, token)
	if seen {
		m.replays++
	}
	m.mu.Unlock()
	if seen && m.staleState {
		return &ec2.RunInstancesOutput{Instances: []types.Instance{first}}, nil
	}
	if seen {
		out, err := m.Client.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{sdk.ToString(first.InstanceId)}})
		if err != nil {
			return nil, err
		}
		return &ec2.RunInstancesOutput{Instances: out.Reservations[0].Instances}, nil
	}
	out, err := m.Client.RunInstances(ctx, in, opts...)
	if err == nil {
		m.mu.Lock()
		m.made[token] = out.Instances[0]
		m.mu.Unlock()
	}
	return out, err
}

func liveIDs(t *testing.T, f *aws.Fleet) []string {
	t.Helper()
	var ids []string
	for _, in := range list(t, f) {
		if in.State != events.Draining {
			ids = append(ids, in.ID)
		}
	}
	return ids
}

// With EC2's token memory: a relaunch in the same scope after the
// instance ended makes a new instance; a duplicate scaler follows the
// same chain of tokens and makes none; a launch that DescribeInstances
// does not show yet is answered with the live instance, not a second one;
// a later scope launches afresh although EC2 remembers every earlier token.
func TestReplayedTokens(t *testing.T) {
	c := moto.Clients(t)
	name := fmt.Sprintf("fleet-%d", serial.Add(1))
	moto.LaunchTemplate(t, c, name+"-worker")
	mem := &tokenMemory{Client: c.EC2, made: map[string]types.Instance{}}
	a := aws.NewFleet(mem, name, name+"-worker")
	const n1 = "app-tier-instance-1"
	minute := aws.WithLaunchScope(context.Background(), "event/1")

	launch(t, minute, a, n1)
	first := liveIDs(t, a)
	// The next tick, as if DescribeInstances did not show it yet.
	launch(t, minute, a, n1)
	if got := liveIDs(t, a); !slices.Equal(got, first) || mem.replays != 1 {
		t.Fatalf("a repeated launch made %v (first %v), %d replays", got, first, mem.replays)
	}

	// Scale to zero and back within the scope.
	if err := a.Drain(minute, []string{n1}); err != nil {
		t.Fatal(err)
	}
	launch(t, minute, a, n1)
	second := liveIDs(t, a)
	if len(second) != 1 || second[0] == first[0] {
		t.Fatalf("relaunch within the scope: live %v, first %v", second, first)
	}

	// A duplicate invocation: another process, the same scope and state.
	b := aws.NewFleet(mem, name, name+"-worker")
	launch(t, minute, b, n1)
	if got := liveIDs(t, b); !slices.Equal(got, second) || len(described(t, c.EC2, name)[n1]) != 2 {
		t.Fatalf("the duplicate made another instance: live %v, all %d", got, len(described(t, c.EC2, name)[n1]))
	}

	// A later minute (or day): a new scope, a new instance.
	if err := a.Drain(minute, []string{n1}); err != nil {
		t.Fatal(err)
	}
	later := aws.WithLaunchScope(context.Background(), "event/2")
	launch(t, later, a, n1)
	third := liveIDs(t, a)
	if len(third) != 1 || slices.Contains(append(first, second...), third[0]) {
		t.Fatalf("a new scope launched %v after %v and %v", third, first, second)
	}

	// A replay whose answer still says pending: the ended instance is
	// recognised from DescribeInstances.
	mem.staleState = true
	if err := a.Drain(later, []string{n1}); err != nil {
		t.Fatal(err)
	}
	launch(t, later, a, n1)
	fourth := liveIDs(t, a)
	if len(fourth) != 1 || fourth[0] == third[0] {
		t.Fatalf("a stale replay was counted as the live instance: %v", fourth)
	}
	if len(slices.Compact(slices.Sorted(slices.Values(mem.tokens)))) != 4 {
		t.Fatalf("four instances from %d distinct tokens: %v", len(slices.Compact(slices.Sorted(slices.Values(mem.tokens)))), mem.tokens)
	}
}

// endlessReplays is a named fake EC2 that answers every RunInstances with
// a terminated instance, as if every token had made one that has ended.
type endlessReplays struct {
	aws.EC2API
	tokens []string
}

func (e *endlessReplays) RunInstances(_ context.Context, in *ec2.RunInstancesInput, _ ...func(*ec2.Options)) (*ec2.RunInstancesOutput, error) {
	e.tokens = append(e.tokens, sdk.ToString(in.ClientToken))
	return &ec2.RunInstancesOutput{Instances: []types.Instance{{
		InstanceId: sdk.String(fmt.Sprintf("i-%d", len(e.tokens))),
		State:      &types.InstanceState{Name: types.InstanceStateNameTerminated},
	}}}, nil
}

func (e *endlessReplays) DescribeInstances(context.Context, *ec2.DescribeInstancesInput, ...func(*ec2.Options)) (*ec2.DescribeInstancesOutput, error) {
	return &ec2.DescribeInstancesOutput{}, nil
}

func TestReplayChainIsBounded(t *testing.T) {
	e := &endlessReplays{}
	err := aws.NewFleet(e, "prod", "prod-worker").Launch(context.Background(), []string{"app-tier-instance-1"})
	if err == nil || !strings.Contains(err.Error(), "ended instances") {
		t.Fatalf("err = %v", err)
	}
	if len(e.tokens) != 8 || len(slices.Compact(slices.Sorted(slices.Values(e.tokens)))) != 8 {
		t.Fatalf("tokens tried: %v", e.tokens)
	}
}

// capacityProxy is a named fake of EC2's capacity and quota refusals,
// which moto lacks: a reverse proxy in front of moto that answers
// RunInstances in a full subnet with InsufficientInstanceCapacity (HTTP
// 500, as EC2 sends it, which the SDK would retry unless told not to),
// and any RunInstances past the quota with VcpuLimitExceeded (400). It
// records the subnet of every RunInstances that reaches it.
type capacityProxy struct {
	proxy *httputil.ReverseProxy

	mu       sync.Mutex
	full     map[string]bool
	quota    int // launches still allowed; negative for no quota
	attempts []string
}

func newCapacityProxy(t *testing.T) (*capacityProxy, *ec2.Client) {
	t.Helper()
	moto, err := url.Parse(os.Getenv("AWS_ENDPOINT_URL"))
	if err != nil {
		t.Fatal(err)
	}
	p := &capacityProxy{proxy: httputil.NewSingleHostReverseProxy(moto), full: map[string]bool{}, quota: -1}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	c, err := aws.LoadClients(context.Background(), config.WithBaseEndpoint(srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	return p, c.EC2
}

func (p *capacityProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	form, _ := url.ParseQuery(string(body))
	if form.Get("Action") == "RunInstances" {
		subnet := form.Get("SubnetId")
		p.mu.Lock()
		p.attempts = append(p.attempts, subnet)
		full, quota := p.full[subnet], p.quota
		if !full && quota > 0 {
			p.quota--
		}
		p.mu.Unlock()
		switch {
		case full:
			refuse(w, http.StatusInternalServerError, "InsufficientInstanceCapacity",
				"We currently do not have sufficient t3.small capacity in the Availability Zone you requested.")
			return
		case quota == 0:
			refuse(w, http.StatusBadRequest, "VcpuLimitExceeded",
				"You have requested more vCPU capacity than your current vCPU limit of 4 allows for the instance bucket that the specified instance type belongs to.")
			return
		}
	}
	p.proxy.ServeHTTP(w, r)
}

// refuse answers with EC2's error document.
func refuse(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>%s</Code><Message>%s</Message></Error></Errors><RequestID>00000000-0000-0000-0000-000000000000</RequestID></Response>`, code, message)
}

func (p *capacityProxy) took() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.attempts
	p.attempts = nil
	return out
}

// defaultSubnets are three of moto's default VPC's subnets, one per zone.
func defaultSubnets(t *testing.T, c *ec2.Client) []string {
	t.Helper()
	out, err := c.DescribeSubnets(context.Background(), &ec2.DescribeSubnetsInput{
		Filters: []types.Filter{{Name: sdk.String("default-for-az"), Values: []string{"true"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(out.Subnets, func(a, b types.Subnet) int {
		return strings.Compare(sdk.ToString(a.AvailabilityZone), sdk.ToString(b.AvailabilityZone))
	})
	var ids []string
	for _, s := range out.Subnets[:3] {
		ids = append(ids, sdk.ToString(s.SubnetId))
	}
	return ids
}

// A full zone moves a launch on to the next subnet, once, without the
// SDK's retries, and is skipped for the rest of the call; every zone full
// or the account's quota reached ends the call with the names launched so
// far.
func TestCapacityAndQuota(t *testing.T) {
	p, client := newCapacityProxy(t)
	name := fmt.Sprintf("fleet-%d", serial.Add(1))
	moto.LaunchTemplate(t, moto.Clients(t), name+"-worker")
	subnets := defaultSubnets(t, client)
	sa, sb, sc := subnets[0], subnets[1], subnets[2]
	f := aws.NewFleet(client, name, name+"-worker", subnets...)
	ctx := context.Background()
	n := func(i int) string { return events.InstanceName(events.DefaultPrefix, i) }

	p.full[sa] = true
	launch(t, ctx, f, n(1), n(2), n(3), n(4))
	if got, want := p.took(), []string{sa, sb, sb, sc, sb}; !slices.Equal(got, want) {
		t.Fatalf("RunInstances went to %v, want %v (a: full)", got, want)
	}
	placed := map[string]string{}
	for name, ins := range described(t, client, name) {
		placed[name] = sdk.ToString(ins[0].SubnetId)
	}
	if want := map[string]string{n(1): sb, n(2): sb, n(3): sc, n(4): sb}; fmt.Sprint(placed) != fmt.Sprint(want) {
		t.Fatalf("placed %v, want %v", placed, want)
	}

	// Every zone full: the first name tries each once, the rest none.
	p.full[sb], p.full[sc] = true, true
	err := f.Launch(ctx, []string{n(5), n(6)})
	var refused *events.CapacityError
	if !errors.As(err, &refused) || !errors.Is(err, events.ErrNoCapacity) || refused.Code != "InsufficientInstanceCapacity" || len(refused.Launched) != 0 || refused.Message == "" {
		t.Fatalf("all zones full: %v", err)
	}
	if got, want := p.took(), []string{sb, sc, sa}; !slices.Equal(got, want) {
		t.Fatalf("RunInstances went to %v, want %v", got, want)
	}

	// A quota ends the call at once, keeping what launched.
	p.full = map[string]bool{}
	p.quota = 1
	err = f.Launch(ctx, []string{n(5), n(6), n(7)})
	if !errors.As(err, &refused) || refused.Code != "VcpuLimitExceeded" || !slices.Equal(refused.Launched, []string{n(5)}) {
		t.Fatalf("at the quota: %v", err)
	}
	if got, want := p.took(), []string{sb, sc}; !slices.Equal(got, want) {
		t.Fatalf("RunInstances went to %v, want %v", got, want)
	}
	if got := len(list(t, f)); got != 5 {
		t.Fatalf("%d instances, want 5", got)
	}
}

// A name that a capacity error sent to another subnet is asked of that
// subnet first for the rest of the scope: a repeat before
// DescribeInstances shows the instance is then answered with it, even if
// its usual zone has room again.
func TestRepeatInScopeAsksTheSameSubnet(t *testing.T) {
	p, client := newCapacityProxy(t)
	name := fmt.Sprintf("fleet-%d", serial.Add(1))
	moto.LaunchTemplate(t, moto.Clients(t), name+"-worker")
	subnets := defaultSubnets(t, client)
	mem := &tokenMemory{Client: client, made: map[string]types.Instance{}}
	f := aws.NewFleet(mem, name, name+"-worker", subnets...)
	scope := aws.WithLaunchScope(context.Background(), "event/1")

	p.full[subnets[0]] = true
	launch(t, scope, f, "app-tier-instance-1")
	p.took()
	p.full = map[string]bool{}
	launch(t, scope, f, "app-tier-instance-1")
	// Answered from EC2's token memory: no launch reaches a zone.
	if got := p.took(); len(got) != 0 || mem.replays != 1 {
		t.Fatalf("the repeat went to %v (%d replays), want the first one's token replayed", got, mem.replays)
	}
	if n := len(described(t, client, name)["app-tier-instance-1"]); n != 1 {
		t.Fatalf("%d instances of one name", n)
	}
	// Another scope starts from the usual subnet again.
	launch(t, aws.WithLaunchScope(context.Background(), "event/2"), f, "app-tier-instance-2")
	if got := p.took(); !slices.Equal(got, subnets[1:2]) {
		t.Fatalf("instance 2 went to %v", got)
	}
}

// A zone that does not offer the instance type (EC2's Unsupported) is
// a zone error, as a zone without capacity is: the launch moves on to the
// fleet's other subnets; with the type offered nowhere, the launch is
// held at a ceiling. Against the emulated EC2 in front of moto.
func TestUnsupportedTypeMovesToAnotherZone(t *testing.T) {
	p, client, f, fleetName, zoneOf, subnets := poolSetup(t, 0)
	ctx := context.Background()
	n := func(i int) string { return events.InstanceName(events.DefaultPrefix, i) }
	// moto.LaunchTemplate's type.
	p.SetUnsupported(zoneOf[subnets[0]] + ":t3.micro")
	launch(t, ctx, f, n(1), n(2), n(3))
	for name, ins := range described(t, client, fleetName) {
		if len(ins) != 1 || sdk.ToString(ins[0].SubnetId) != subnets[1] {
			t.Errorf("%s: %d instances, in %s; want one, in %s (%s)", name, len(ins), sdk.ToString(ins[0].SubnetId), subnets[1], zoneOf[subnets[1]])
		}
	}

	p.SetUnsupported(zoneOf[subnets[0]]+":t3.micro", zoneOf[subnets[1]]+":t3.micro")
	err := f.Launch(ctx, []string{n(4)})
	var refused *events.CapacityError
	if !errors.As(err, &refused) || refused.Code != "Unsupported" || len(refused.Launched) != 0 || !strings.Contains(refused.Message, "not supported") {
		t.Fatalf("a type no subnet's zone offers: %v", err)
	}
}
