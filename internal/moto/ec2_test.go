package moto

import (
	"context"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

func TestLifecycleShow(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	life := lifecycle{pendingFor: time.Minute, shuttingDownFor: 2 * time.Minute, terminatedVisible: time.Hour}
	launched := instanceRecord{launchedAt: t0}
	ended := instanceRecord{launchedAt: t0, terminatedAt: t0.Add(10 * time.Minute)}
	cases := []struct {
		name      string
		life      lifecycle
		motoState string
		rec       instanceRecord
		at        time.Time
		want      string
		gone      bool
	}{
		{"new instance is pending", life, "running", launched, t0, "pending", false},
		{"pending until PendingFor", life, "running", launched, t0.Add(time.Minute - 1), "pending", false},
		{"running after PendingFor", life, "running", launched, t0.Add(time.Minute), "running", false},
		{"no PendingFor: moto's state", lifecycle{terminatedVisible: time.Hour}, "running", launched, t0, "running", false},
		{"moto's pending stays", life, "pending", launched, t0.Add(time.Hour), "pending", false},
		{"stopped passes through", life, "stopped", launched, t0, "stopped", false},
		{"terminated shuts down first", life, "terminated", ended, ended.terminatedAt, "shutting-down", false},
		{"shutting-down until ShuttingDownFor", life, "terminated", ended, ended.terminatedAt.Add(2*time.Minute - 1), "shutting-down", false},
		{"then terminated", life, "terminated", ended, ended.terminatedAt.Add(2 * time.Minute), "terminated", false},
		{"visible until TerminatedVisible", life, "terminated", ended, ended.terminatedAt.Add(62*time.Minute - 1), "terminated", false},
		{"then gone", life, "terminated", ended, ended.terminatedAt.Add(62 * time.Minute), "terminated", true},
		{"no ShuttingDownFor: terminated at once", lifecycle{terminatedVisible: time.Hour}, "terminated", ended, ended.terminatedAt, "terminated", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, gone := c.life.show(c.motoState, c.rec, c.at)
			if got != c.want || gone != c.gone {
				t.Errorf("show = %s, gone %v; want %s, gone %v", got, gone, c.want, c.gone)
			}
		})
	}
}

func TestVCPUsOf(t *testing.T) {
	cases := map[string]int{
		"t2.nano": 1, "t2.micro": 1, "t2.small": 1, "t2.medium": 2, "t2.large": 2, "t2.xlarge": 4, "t2.2xlarge": 8,
		"t3.nano": 2, "t3.micro": 2, "t3.small": 2, "t3.medium": 2, "t3.large": 2, "t3.xlarge": 4, "t3.2xlarge": 8,
		"t3a.small": 2, "t4g.micro": 2, "t4g.2xlarge": 8,
		"m5.large": 2, "m5.xlarge": 4, "m5.2xlarge": 8, "m5.24xlarge": 96, "c5.9xlarge": 36, "c6i.large": 2,
		"c7i.4xlarge": 16, "m6i.xlarge": 4, "m7i.large": 2, "r5.large": 2, "r6i.8xlarge": 32, "m1.small": 1,
	}
	for typ, want := range cases {
		if got, ok := vcpusOf(typ); !ok || got != want {
			t.Errorf("vcpusOf(%s) = %d, %v; want %d", typ, got, ok, want)
		}
	}
	for _, typ := range []string{"", "t3", "p4d.24xlarge", "m5.small", "m5.nano", "t3.4xlarge", "c5.1xlarge", "c5.xxlarge", "g5.xlarge"} {
		if n, ok := vcpusOf(typ); ok {
			t.Errorf("vcpusOf(%q) = %d, want unknown", typ, n)
		}
	}
}

func TestTokenForgotten(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	cases := []struct {
		name string
		recs []instanceRecord
		at   time.Time
		want bool
	}{
		{"running instance keeps it", []instanceRecord{{launchedAt: t0}}, t0.Add(100 * day), false},
		{"within memory", []instanceRecord{{terminatedAt: t0}}, t0.Add(day - 1), false},
		{"memory ends", []instanceRecord{{terminatedAt: t0}}, t0.Add(day), true},
		{"one still running", []instanceRecord{{terminatedAt: t0}, {launchedAt: t0}}, t0.Add(2 * day), false},
		{"counts from the last termination", []instanceRecord{{terminatedAt: t0}, {terminatedAt: t0.Add(day)}}, t0.Add(2*day - 1), false},
		{"no instances", nil, t0, true},
	}
	for _, c := range cases {
		if got := tokenForgotten(c.recs, c.at, day); got != c.want {
			t.Errorf("%s: tokenForgotten = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestFilters(t *testing.T) {
	form := url.Values{
		"Action":            {"DescribeInstances"},
		"Filter.1.Name":     {"tag:Name"},
		"Filter.1.Value.1":  {"web"},
		"Filter.2.Name":     {"instance-state-name"},
		"Filter.2.Value.1":  {"pending"},
		"Filter.2.Value.2":  {"running"},
		"Filter.10.Name":    {"instance-state-code"},
		"Filter.10.Value.1": {"16"},
		"Filter.3.Name":     {"tag:surge:fleet"},
		"Filter.3.Value.1":  {"surge"},
	}
	got := parseFilters(form)
	want := []ec2Filter{
		{"tag:Name", []string{"web"}},
		{"instance-state-name", []string{"pending", "running"}},
		{"tag:surge:fleet", []string{"surge"}},
		{"instance-state-code", []string{"16"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("parseFilters = %v, want %v", got, want)
	}
	out := withFilters(form, []ec2Filter{want[0], want[2]})
	if out.Get("Filter.2.Name") != "tag:surge:fleet" || out.Get("Filter.2.Value.1") != "surge" || out.Has("Filter.3.Name") || out.Has("Filter.10.Name") || out.Get("Action") != "DescribeInstances" {
		t.Errorf("withFilters = %v", out)
	}
	states := want[1:2]
	states = append(states, want[3])
	for state, ok := range map[string]bool{"running": true, "pending": false, "stopped": false} {
		if got := matchesStateFilters(states, state); got != ok {
			t.Errorf("matchesStateFilters(%s) = %v, want %v", state, got, ok)
		}
	}
	if !matchesStateFilters(nil, "terminated") {
		t.Error("no filter must match everything")
	}
}

func TestFingerprintIgnoresTokenAndVersion(t *testing.T) {
	a := url.Values{"Action": {"RunInstances"}, "Version": {"2016-11-15"}, "ClientToken": {"a"}, "ImageId": {"ami-1"}, "MinCount": {"1"}}
	b := url.Values{"Action": {"RunInstances"}, "Version": {"2015-01-01"}, "ClientToken": {"b"}, "ImageId": {"ami-1"}, "MinCount": {"1"}}
	c := url.Values{"Action": {"RunInstances"}, "ClientToken": {"a"}, "ImageId": {"ami-1"}, "MinCount": {"2"}}
	if fingerprint(a) != fingerprint(b) {
		t.Error("fingerprints differ on ignored parameters")
	}
	if fingerprint(a) == fingerprint(c) {
		t.Error("fingerprints equal for different MinCount")
	}
}

// ec2Client is an EC2 client through p.
func ec2Client(p *Proxy) *ec2.Client { return ec2.NewFromConfig(sdkConfig(p, "tester")) }

func run(t *testing.T, c *ec2.Client, in *ec2.RunInstancesInput) (*ec2.RunInstancesOutput, error) {
	t.Helper()
	if in.ImageId == nil && in.LaunchTemplate == nil {
		in.ImageId = aws.String("ami-12345678")
	}
	if in.MinCount == nil {
		in.MinCount, in.MaxCount = aws.Int32(1), aws.Int32(1)
	}
	return c.RunInstances(context.Background(), in)
}

func mustRun(t *testing.T, c *ec2.Client, in *ec2.RunInstancesInput) *ec2.RunInstancesOutput {
	t.Helper()
	out, err := run(t, c, in)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// states lists what DescribeInstances shows, by instance id.
func states(t *testing.T, c *ec2.Client, filters ...types.Filter) map[string]string {
	t.Helper()
	out, err := c.DescribeInstances(context.Background(), &ec2.DescribeInstancesInput{Filters: filters})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, r := range out.Reservations {
		if len(r.Instances) == 0 {
			t.Error("an empty reservation is shown")
		}
		for _, in := range r.Instances {
			got[*in.InstanceId] = string(in.State.Name)
		}
	}
	return got
}

func terminate(t *testing.T, c *ec2.Client, ids ...string) *ec2.TerminateInstancesOutput {
	t.Helper()
	out, err := c.TerminateInstances(context.Background(), &ec2.TerminateInstancesInput{InstanceIds: ids})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestClientTokenReplay(t *testing.T) {
	p := start(t, ProxyConfig{})
	c := ec2Client(p)
	in := func() *ec2.RunInstancesInput {
		return &ec2.RunInstancesInput{InstanceType: types.InstanceTypeT3Small, ClientToken: aws.String("slot-1")}
	}
	first := mustRun(t, c, in())
	id := *first.Instances[0].InstanceId

	again := mustRun(t, c, in())
	if got := *again.Instances[0].InstanceId; got != id {
		t.Fatalf("repeat launched %s, want %s again", got, id)
	}
	if again.Instances[0].State.Name != types.InstanceStateNameRunning {
		t.Errorf("repeat shows %s, want the current state running", again.Instances[0].State.Name)
	}
	if n := len(states(t, c)); n != 1 {
		t.Fatalf("%d instances exist, want 1", n)
	}

	_, err := run(t, c, &ec2.RunInstancesInput{InstanceType: types.InstanceTypeT3Micro, ClientToken: aws.String("slot-1")})
	if code, _, status := apiError(t, err); code != "IdempotentParameterMismatch" || status != 400 {
		t.Errorf("changed parameters: %s (%d), want IdempotentParameterMismatch (400)", code, status)
	}

	terminate(t, c, id)
	p.Clock().Advance(time.Hour)
	if got := states(t, c); len(got) != 0 {
		t.Errorf("an hour after termination DescribeInstances shows %v", got)
	}
	_, err = c.DescribeInstances(context.Background(), &ec2.DescribeInstancesInput{InstanceIds: []string{id}})
	if code, _, _ := apiError(t, err); code != "InvalidInstanceID.NotFound" {
		t.Errorf("describing the gone instance: %s, want InvalidInstanceID.NotFound", code)
	}
	replayed := mustRun(t, c, in())
	if got := *replayed.Instances[0].InstanceId; got != id || replayed.Instances[0].State.Name != types.InstanceStateNameTerminated {
		t.Errorf("the token within EC2's memory answered %s %s, want %s terminated", got, replayed.Instances[0].State.Name, id)
	}
	if len(states(t, c)) != 0 {
		t.Error("the replay launched an instance")
	}

	p.Clock().Advance(23 * time.Hour)
	fresh := mustRun(t, c, in())
	if got := *fresh.Instances[0].InstanceId; got == id {
		t.Error("24 hours after termination the token still replays the old instance")
	}
	if got := states(t, c); len(got) != 1 {
		t.Errorf("after the token was forgotten: %v, want one new instance", got)
	}
}

func TestConcurrentRepeatsLaunchOnce(t *testing.T) {
	p := start(t, ProxyConfig{})
	c := ec2Client(p)
	ids := make([]string, 4)
	var wg sync.WaitGroup
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := run(t, c, &ec2.RunInstancesInput{InstanceType: types.InstanceTypeT3Small, ClientToken: aws.String("same")})
			if err != nil {
				t.Error(err)
				return
			}
			ids[i] = *out.Instances[0].InstanceId
		}()
	}
	wg.Wait()
	for _, id := range ids[1:] {
		if id != ids[0] {
			t.Errorf("concurrent repeats got %v, want one instance", ids)
		}
	}
	if n := len(states(t, c)); n != 1 {
		t.Errorf("%d instances exist, want 1", n)
	}
}

func TestLifecycleOverlay(t *testing.T) {
	p := start(t, ProxyConfig{PendingFor: time.Minute, ShuttingDownFor: time.Minute, TerminatedVisible: time.Hour})
	c := ec2Client(p)
	out := mustRun(t, c, &ec2.RunInstancesInput{InstanceType: types.InstanceTypeT3Small})
	id := *out.Instances[0].InstanceId
	if out.Instances[0].State.Name != types.InstanceStateNamePending {
		t.Errorf("RunInstances answered %s", out.Instances[0].State.Name)
	}
	byName := func(v string) types.Filter {
		return types.Filter{Name: aws.String("instance-state-name"), Values: []string{v}}
	}
	byCode := func(v string) types.Filter {
		return types.Filter{Name: aws.String("instance-state-code"), Values: []string{v}}
	}
	check := func(when string, want string) {
		t.Helper()
		if got := states(t, c)[id]; got != want {
			t.Errorf("%s: shows %q, want %q", when, got, want)
		}
		if got := states(t, c, byName(want)); len(got) != 1 {
			t.Errorf("%s: filter state-name=%s finds %v", when, want, got)
		}
		if got := states(t, c, byCode(map[string]string{"pending": "0", "running": "16", "shutting-down": "32", "terminated": "48"}[want])); len(got) != 1 {
			t.Errorf("%s: filter state-code finds %v", when, got)
		}
		for _, other := range []string{"pending", "running", "shutting-down", "terminated"} {
			if other != want && len(states(t, c, byName(other))) != 0 {
				t.Errorf("%s: filter state-name=%s finds the %s instance", when, other, want)
			}
		}
	}
	check("just launched", "pending")
	// A state filter together with another filter: both apply.
	if got := states(t, c, byName("pending"), types.Filter{Name: aws.String("instance-type"), Values: []string{"t3.micro"}}); len(got) != 0 {
		t.Errorf("filters on pending and t3.micro find %v", got)
	}
	p.Clock().Advance(time.Minute)
	check("a minute later", "running")
	term := terminate(t, c, id)
	if s := term.TerminatingInstances[0]; s.CurrentState.Name != types.InstanceStateNameShuttingDown || s.PreviousState.Name != types.InstanceStateNameRunning {
		t.Errorf("TerminateInstances answered %s → %s", s.PreviousState.Name, s.CurrentState.Name)
	}
	check("terminated", "shutting-down")
	p.Clock().Advance(time.Minute)
	check("a minute after termination", "terminated")
	p.Clock().Advance(time.Hour)
	if got := states(t, c); len(got) != 0 {
		t.Errorf("past TerminatedVisible DescribeInstances shows %v", got)
	}
}

func TestVCPUQuota(t *testing.T) {
	p := start(t, ProxyConfig{VCPUQuota: 8})
	c := ec2Client(p)
	// t3.small has 2 vCPUs: four fill the quota exactly.
	mustRun(t, c, &ec2.RunInstancesInput{InstanceType: types.InstanceTypeT3Small, MinCount: aws.Int32(3), MaxCount: aws.Int32(3)})
	last := mustRun(t, c, &ec2.RunInstancesInput{InstanceType: types.InstanceTypeT3Small})
	_, err := run(t, c, &ec2.RunInstancesInput{InstanceType: types.InstanceTypeT3Small})
	code, msg, status := apiError(t, err)
	if code != "VcpuLimitExceeded" || status != 400 || msg != vcpuLimitMessage(8) || !strings.Contains(msg, "current vCPU limit of 8 allows") {
		t.Errorf("over the quota: %s (%d) %q", code, status, msg)
	}
	// A terminated instance frees its vCPUs.
	terminate(t, c, *last.Instances[0].InstanceId)
	mustRun(t, c, &ec2.RunInstancesInput{InstanceType: types.InstanceTypeT3Small})

	// The type from a launch template: c5.xlarge has 4 vCPUs.
	_, err = c.CreateLaunchTemplate(context.Background(), &ec2.CreateLaunchTemplateInput{
		LaunchTemplateName: aws.String("big"),
		LaunchTemplateData: &types.RequestLaunchTemplateData{ImageId: aws.String("ami-12345678"), InstanceType: types.InstanceTypeC5Xlarge},
	})
	if err != nil {
		t.Fatal(err)
	}
	fromTemplate := &ec2.RunInstancesInput{LaunchTemplate: &types.LaunchTemplateSpecification{LaunchTemplateName: aws.String("big"), Version: aws.String("$Latest")}}
	p.SetVCPUQuota(11)
	if _, err := run(t, c, fromTemplate); err == nil {
		t.Fatal("8 + 4 vCPUs launched under a quota of 11")
	}
	p.SetVCPUQuota(12)
	mustRun(t, c, fromTemplate)

	// Between MinCount and MaxCount, as many as fit.
	p.SetVCPUQuota(18)
	out := mustRun(t, c, &ec2.RunInstancesInput{InstanceType: types.InstanceTypeT3Small, MinCount: aws.Int32(1), MaxCount: aws.Int32(10)})
	if len(out.Instances) != 3 {
		t.Errorf("MaxCount 10 with 6 vCPUs free launched %d t3.small, want 3", len(out.Instances))
	}

	_, err = run(t, c, &ec2.RunInstancesInput{InstanceType: "p4d.24xlarge"})
	if code, msg, status := apiError(t, err); code != "InvalidParameterValue" || status != 400 || msg != "Invalid value 'p4d.24xlarge' for InstanceType." {
		t.Errorf("unknown type: %s (%d) %q", code, status, msg)
	}
}

// defaultSubnets are the default VPC's subnets by zone.
func defaultSubnets(t *testing.T, c *ec2.Client) map[string]string {
	t.Helper()
	subnets, err := c.DescribeSubnets(context.Background(), &ec2.DescribeSubnetsInput{})
	if err != nil {
		t.Fatal(err)
	}
	byZone := map[string]string{}
	for _, s := range subnets.Subnets {
		byZone[*s.AvailabilityZone] = *s.SubnetId
	}
	return byZone
}

func TestCapacityPerAZ(t *testing.T) {
	p := start(t, ProxyConfig{NoCapacity: []string{"us-east-1a", "us-east-1c"}})
	c := ec2Client(p)
	subnetIn := defaultSubnets(t, c)
	_, err := run(t, c, &ec2.RunInstancesInput{InstanceType: types.InstanceTypeT3Small, SubnetId: aws.String(subnetIn["us-east-1a"])})
	code, msg, status := apiError(t, err)
	want := "We currently do not have sufficient t3.small capacity in the Availability Zone you requested (us-east-1a). " +
		"Our system will be working on provisioning additional capacity. You can currently get t3.small capacity by not " +
		"specifying an Availability Zone in your request or choosing us-east-1b, us-east-1d, us-east-1e, us-east-1f."
	if code != "InsufficientInstanceCapacity" || status != 500 || msg != want {
		t.Errorf("no capacity: %s (%d) %q", code, status, msg)
	}
	_, err = run(t, c, &ec2.RunInstancesInput{InstanceType: types.InstanceTypeT3Small, Placement: &types.Placement{AvailabilityZone: aws.String("us-east-1c")}})
	if code, _, _ := apiError(t, err); code != "InsufficientInstanceCapacity" {
		t.Errorf("Placement in a zone without capacity: %s", code)
	}
	ok := mustRun(t, c, &ec2.RunInstancesInput{InstanceType: types.InstanceTypeT3Small, SubnetId: aws.String(subnetIn["us-east-1b"])})
	if az := *ok.Instances[0].Placement.AvailabilityZone; az != "us-east-1b" {
		t.Errorf("launched in %s", az)
	}
	// Left to choose, EC2 finds a zone with capacity.
	anywhere := mustRun(t, c, &ec2.RunInstancesInput{InstanceType: types.InstanceTypeT3Small})
	if az := *anywhere.Instances[0].Placement.AvailabilityZone; az == "us-east-1a" || az == "us-east-1c" {
		t.Errorf("an instance with no zone asked for landed in %s, which has no capacity", az)
	}
	// A launch template's subnet counts as asked for.
	_, err = c.CreateLaunchTemplate(context.Background(), &ec2.CreateLaunchTemplateInput{
		LaunchTemplateName: aws.String("in-a"),
		LaunchTemplateData: &types.RequestLaunchTemplateData{
			ImageId: aws.String("ami-12345678"), InstanceType: types.InstanceTypeT3Micro,
			NetworkInterfaces: []types.LaunchTemplateInstanceNetworkInterfaceSpecificationRequest{{DeviceIndex: aws.Int32(0), SubnetId: aws.String(subnetIn["us-east-1a"])}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = run(t, c, &ec2.RunInstancesInput{LaunchTemplate: &types.LaunchTemplateSpecification{LaunchTemplateName: aws.String("in-a")}})
	if code, msg, _ := apiError(t, err); code != "InsufficientInstanceCapacity" || !strings.Contains(msg, "t3.micro capacity in the Availability Zone you requested (us-east-1a)") {
		t.Errorf("template's subnet in a zone without capacity: %s %q", code, msg)
	}
	p.SetNoCapacity()
	mustRun(t, c, &ec2.RunInstancesInput{InstanceType: types.InstanceTypeT3Small, SubnetId: aws.String(subnetIn["us-east-1a"])})
}

func TestStateFilterAnswersOnePage(t *testing.T) {
	p := start(t, ProxyConfig{})
	c := ec2Client(p)
	for range 6 { // moto pages by reservation
		mustRun(t, c, &ec2.RunInstancesInput{InstanceType: types.InstanceTypeT3Small})
	}
	ctx := context.Background()
	paged, err := c.DescribeInstances(ctx, &ec2.DescribeInstancesInput{MaxResults: aws.Int32(5)})
	if err != nil {
		t.Fatal(err)
	}
	if paged.NextToken == nil {
		t.Error("without a state filter MaxResults must page as moto does")
	}
	filtered, err := c.DescribeInstances(ctx, &ec2.DescribeInstancesInput{
		MaxResults: aws.Int32(5),
		Filters:    []types.Filter{{Name: aws.String("instance-state-name"), Values: []string{"running"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range filtered.Reservations {
		n += len(r.Instances)
	}
	if n != 6 || filtered.NextToken != nil {
		t.Errorf("with a state filter: %d instances, next token %v; want all 6 in one page", n, filtered.NextToken)
	}
}

// An instance launched from a template whose shutdown behaviour is
// terminate terminates when it powers itself off (moto would take only
// the request's and leave it stopped).
func TestShutdownBehaviourFromLaunchTemplate(t *testing.T) {
	p := start(t, ProxyConfig{})
	c := ec2Client(p)
	ctx := context.Background()
	if _, err := c.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{
		LaunchTemplateName: aws.String("ends"),
		LaunchTemplateData: &types.RequestLaunchTemplateData{
			ImageId: aws.String("ami-12345678"), InstanceType: types.InstanceTypeT3Small,
			InstanceInitiatedShutdownBehavior: types.ShutdownBehaviorTerminate,
		},
	}); err != nil {
		t.Fatal(err)
	}
	for name, in := range map[string]*ec2.RunInstancesInput{
		"template": {LaunchTemplate: &types.LaunchTemplateSpecification{LaunchTemplateName: aws.String("ends"), Version: aws.String("$Latest")}},
		"request":  {InstanceType: types.InstanceTypeT3Small, InstanceInitiatedShutdownBehavior: types.ShutdownBehaviorTerminate},
		"default":  {InstanceType: types.InstanceTypeT3Small},
	} {
		out := mustRun(t, c, in)
		attr, err := c.DescribeInstanceAttribute(ctx, &ec2.DescribeInstanceAttributeInput{
			InstanceId: out.Instances[0].InstanceId, Attribute: types.InstanceAttributeNameInstanceInitiatedShutdownBehavior,
		})
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{"template": "terminate", "request": "terminate", "default": "stop"}[name]
		if got := aws.ToString(attr.InstanceInitiatedShutdownBehavior.Value); got != want {
			t.Errorf("%s: shutdown behaviour %q, want %q", name, got, want)
		}
	}
}

// A slow RunInstances launches at once (its instance counts against the
// quota) but is listed only once it has answered; a caller that gives up
// first launched all the same.
func TestRunInstancesDelay(t *testing.T) {
	p := start(t, ProxyConfig{RunInstancesDelay: time.Second, VCPUQuota: 4})
	c := ec2Client(p)
	answered := make(chan error, 1)
	go func() {
		_, err := run(t, c, &ec2.RunInstancesInput{InstanceType: types.InstanceTypeT3Small})
		answered <- err
	}()
	time.Sleep(300 * time.Millisecond)
	select {
	case err := <-answered:
		t.Fatalf("answered within a third of the delay: %v", err)
	default:
	}
	if got := states(t, c); len(got) != 0 {
		t.Fatalf("before RunInstances answered, DescribeInstances shows %v", got)
	}
	if err := <-answered; err != nil {
		t.Fatal(err)
	}
	if got := states(t, c); len(got) != 1 {
		t.Fatalf("after RunInstances answered, DescribeInstances shows %v", got)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := c.RunInstances(ctx, &ec2.RunInstancesInput{
		ImageId: aws.String("ami-12345678"), InstanceType: types.InstanceTypeT3Small, MinCount: aws.Int32(1), MaxCount: aws.Int32(1),
	}); err == nil {
		t.Fatal("a RunInstances cut short by its caller answered")
	}
	// Unlisted yet, it holds its vCPUs: the quota of 4 is full.
	if _, err := run(t, c, &ec2.RunInstancesInput{InstanceType: types.InstanceTypeT3Small}); err == nil {
		t.Fatal("a launch past the quota, counting one not yet listed, went through")
	} else if code, _, _ := apiError(t, err); code != "VcpuLimitExceeded" {
		t.Fatalf("a launch past the quota: %s", code)
	}
	eventually(t, "the given-up launch to be listed", func() bool { return len(states(t, c)) == 2 })

	p.SetRunInstancesDelay(0)
	p.SetVCPUQuota(0)
	mustRun(t, c, &ec2.RunInstancesInput{InstanceType: types.InstanceTypeT3Small})
}

// A zone that does not offer an instance type refuses it with
// Unsupported (400) and names the zones that do; left to choose, EC2
// picks one that offers it.
func TestUnsupportedInZone(t *testing.T) {
	p := start(t, ProxyConfig{Unsupported: []string{"us-east-1a:t3.small", "us-east-1e:t3.small"}})
	c := ec2Client(p)
	subnetIn := defaultSubnets(t, c)
	_, err := run(t, c, &ec2.RunInstancesInput{InstanceType: types.InstanceTypeT3Small, SubnetId: aws.String(subnetIn["us-east-1e"])})
	code, msg, status := apiError(t, err)
	want := "Your requested instance type (t3.small) is not supported in your requested Availability Zone (us-east-1e). " +
		"Please retry your request by not specifying an Availability Zone or choosing us-east-1b, us-east-1c, us-east-1d, us-east-1f."
	if code != "Unsupported" || status != 400 || msg != want {
		t.Errorf("unsupported: %s (%d) %q", code, status, msg)
	}
	// Another type is offered there; and where capacity is short too, the
	// type is what EC2 answers about.
	mustRun(t, c, &ec2.RunInstancesInput{InstanceType: types.InstanceTypeT3Micro, SubnetId: aws.String(subnetIn["us-east-1e"])})
	p.SetNoCapacity("us-east-1e", "us-east-1b")
	_, err = run(t, c, &ec2.RunInstancesInput{InstanceType: types.InstanceTypeT3Small, Placement: &types.Placement{AvailabilityZone: aws.String("us-east-1e")}})
	if code, _, _ := apiError(t, err); code != "Unsupported" {
		t.Errorf("a zone without the type nor capacity: %s", code)
	}
	_, err = run(t, c, &ec2.RunInstancesInput{InstanceType: types.InstanceTypeT3Small, SubnetId: aws.String(subnetIn["us-east-1b"])})
	if code, msg, _ := apiError(t, err); code != "InsufficientInstanceCapacity" || !strings.HasSuffix(msg, "choosing us-east-1c, us-east-1d, us-east-1f.") {
		t.Errorf("no capacity where the type is offered: %s %q", code, msg)
	}
	// Left to choose, EC2 finds a zone that offers the type and has room.
	anywhere := mustRun(t, c, &ec2.RunInstancesInput{InstanceType: types.InstanceTypeT3Small})
	if az := *anywhere.Instances[0].Placement.AvailabilityZone; az != "us-east-1c" {
		t.Errorf("an instance with no zone asked for landed in %s, want us-east-1c", az)
	}
	p.SetNoCapacity()
	p.SetUnsupported()
	mustRun(t, c, &ec2.RunInstancesInput{InstanceType: types.InstanceTypeT3Small, SubnetId: aws.String(subnetIn["us-east-1e"])})
}
