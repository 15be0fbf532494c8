package stackhooks

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/cfn"
	sdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"golang.org/x/sync/errgroup"

	"github.com/surgeml/surge/internal/aws"
	"github.com/surgeml/surge/internal/moto"
	"github.com/surgeml/surge/internal/testenv"
)

// The hook is tested against moto_server on loopback.
func TestMain(m *testing.M) { moto.Main(m) }

var serial atomic.Int32

func unique(prefix string) string { return fmt.Sprintf("%s-%d", prefix, serial.Add(1)) }

func testLog(t *testing.T) *slog.Logger { return slog.New(slog.NewTextHandler(t.Output(), nil)) }

// cloudFormation stands in for CloudFormation's presigned response URL:
// a real HTTP server on a loopback socket that records what is PUT to it.
type cloudFormation struct {
	url     string
	mu      sync.Mutex
	answers []map[string]any
}

func newCloudFormation(t *testing.T) *cloudFormation {
	cf := &cloudFormation{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		answer := map[string]any{}
		if r.Method != http.MethodPut {
			http.Error(w, "presigned for PUT", http.StatusMethodNotAllowed)
			return
		}
		// The URL is presigned without a content type; S3 refuses a
		// request that sends one.
		if ct := r.Header.Get("Content-Type"); ct != "" {
			http.Error(w, "unsigned Content-Type "+ct, http.StatusForbidden)
			return
		}
		if err := json.Unmarshal(body, &answer); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		cf.mu.Lock()
		cf.answers = append(cf.answers, answer)
		cf.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	cf.url = srv.URL + "/cloudformation-custom-resource-response?X-Amz-Signature=x"
	return cf
}

func (cf *cloudFormation) event(typ cfn.RequestType, physicalID string) cfn.Event {
	n := serial.Add(1)
	return cfn.Event{
		RequestType:        typ,
		RequestID:          fmt.Sprintf("request-%d", n),
		ResponseURL:        cf.url,
		ResourceType:       "Custom::SurgeStackHooks",
		PhysicalResourceID: physicalID,
		LogicalResourceID:  "StackHooks",
		StackID:            fmt.Sprintf("arn:aws:cloudformation:us-east-1:123456789012:stack/surge-%d/0b1e", n),
		ResourceProperties: map[string]any{"ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:surge-hooks"},
	}
}

// invoke runs the handler as Lambda would, through cfn.LambdaWrap, and
// returns the one answer CloudFormation received.
func (cf *cloudFormation) invoke(ctx context.Context, h *Hook, ev cfn.Event) (map[string]any, error) {
	cf.mu.Lock()
	before := len(cf.answers)
	cf.mu.Unlock()
	if reason, err := cfn.LambdaWrap(h.Handle)(ctx, ev); err != nil || reason != "" {
		return nil, fmt.Errorf("sending the answer: %q, %v", reason, err)
	}
	cf.mu.Lock()
	defer cf.mu.Unlock()
	if got := len(cf.answers) - before; got != 1 {
		return nil, fmt.Errorf("CloudFormation got %d answers, want 1", got)
	}
	return cf.answers[len(cf.answers)-1], nil
}

// checkAnswer asserts the body CloudFormation expects: the request's ids
// echoed, the status, the physical id, and a reason exactly when failing.
func checkAnswer(t *testing.T, got map[string]any, ev cfn.Event, status, physicalID string) {
	t.Helper()
	for k, want := range map[string]string{
		"Status": status, "PhysicalResourceId": physicalID,
		"StackId": ev.StackID, "RequestId": ev.RequestID, "LogicalResourceId": ev.LogicalResourceID,
	} {
		if got[k] != want {
			t.Errorf("answer %s = %v, want %q", k, got[k], want)
		}
	}
	reason, hasReason := got["Reason"].(string)
	if status == "FAILED" && reason == "" {
		t.Errorf("FAILED without a reason: %v", got)
	}
	if status == "SUCCESS" && hasReason {
		t.Errorf("SUCCESS with a reason: %v", got)
	}
	if b, _ := json.Marshal(got); len(b) > 4096 {
		t.Errorf("answer is %d bytes; CloudFormation takes at most 4096", len(b))
	}
}

func TestCreateClosesDefaultSecurityGroup(t *testing.T) {
	c := moto.Clients(t)
	ctx := t.Context()
	vpc, group := vpcWithAWSDefaultGroup(t, c, "10.0.0.0/16")
	_, otherGroup := vpcWithAWSDefaultGroup(t, c, "10.1.0.0/16")
	fleet := unique("fleet")
	h := New(Config{Fleet: fleet, VPCID: vpc}, c, testLog(t))
	cf := newCloudFormation(t)

	ev := cf.event(cfn.RequestCreate, "")
	answer, err := cf.invoke(ctx, h, ev)
	if err != nil {
		t.Fatal(err)
	}
	checkAnswer(t, answer, ev, "SUCCESS", "surge-hooks-"+fleet)
	if in, out := rules(t, c, group); len(in)+len(out) != 0 {
		t.Fatalf("default group still has rules: in %v, out %v", in, out)
	}
	if in, out := rules(t, c, otherGroup); len(in) != 1 || len(out) != 2 {
		t.Fatalf("another VPC's default group changed: in %v, out %v", in, out)
	}

	// Update on a closed group: nothing to do, same id, so no replacement.
	ev = cf.event(cfn.RequestUpdate, "surge-hooks-"+fleet)
	if answer, err = cf.invoke(ctx, h, ev); err != nil {
		t.Fatal(err)
	}
	checkAnswer(t, answer, ev, "SUCCESS", "surge-hooks-"+fleet)
	// A rule added since (by hand, say) goes at the next Update, which
	// answers with the id CloudFormation has, whatever it is.
	authorizeSelf(t, c, group)
	ev = cf.event(cfn.RequestUpdate, "id-from-an-older-version")
	if answer, err = cf.invoke(ctx, h, ev); err != nil {
		t.Fatal(err)
	}
	checkAnswer(t, answer, ev, "SUCCESS", "id-from-an-older-version")
	if in, out := rules(t, c, group); len(in)+len(out) != 0 {
		t.Fatalf("Update left rules: in %v, out %v", in, out)
	}

	// A VPC that is not there fails, with a reason naming it.
	h = New(Config{Fleet: fleet, VPCID: "vpc-0000000000000000f"}, c, testLog(t))
	ev = cf.event(cfn.RequestCreate, "")
	if answer, err = cf.invoke(ctx, h, ev); err != nil {
		t.Fatal(err)
	}
	checkAnswer(t, answer, ev, "FAILED", "surge-hooks-"+fleet)
	if !strings.Contains(answer["Reason"].(string), "vpc-0000000000000000f") {
		t.Errorf("reason %q does not name the VPC", answer["Reason"])
	}
}

// vpcWithAWSDefaultGroup makes a VPC whose default security group has the
// rules AWS gives one: all inbound from the group itself, all outbound to
// 0.0.0.0/0, and to ::/0 when the VPC has IPv6. moto 5.2.1 makes only the
// IPv4 outbound rule, so the others are added here.
func vpcWithAWSDefaultGroup(t *testing.T, c *aws.Clients, cidr string) (vpc, group string) {
	t.Helper()
	ctx := t.Context()
	out, err := c.EC2.CreateVpc(ctx, &ec2.CreateVpcInput{CidrBlock: sdk.String(cidr)})
	if err != nil {
		t.Fatal(err)
	}
	vpc = sdk.ToString(out.Vpc.VpcId)
	groups, err := c.EC2.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{Filters: []ec2types.Filter{
		{Name: sdk.String("vpc-id"), Values: []string{vpc}},
		{Name: sdk.String("group-name"), Values: []string{"default"}},
	}})
	if err != nil || len(groups.SecurityGroups) != 1 {
		t.Fatalf("default group of %s: %v, %v", vpc, groups, err)
	}
	group = sdk.ToString(groups.SecurityGroups[0].GroupId)
	if in, outRules := rules(t, c, group); len(in) != 0 || len(outRules) != 1 {
		t.Fatalf("moto's default group has in %v, out %v; expected only 0.0.0.0/0 out (has moto changed?)", in, outRules)
	}
	authorizeSelf(t, c, group)
	if _, err := c.EC2.AuthorizeSecurityGroupEgress(ctx, &ec2.AuthorizeSecurityGroupEgressInput{GroupId: &group, IpPermissions: []ec2types.IpPermission{{
		IpProtocol: sdk.String("-1"), Ipv6Ranges: []ec2types.Ipv6Range{{CidrIpv6: sdk.String("::/0")}},
	}}}); err != nil {
		t.Fatal(err)
	}
	return vpc, group
}

func authorizeSelf(t *testing.T, c *aws.Clients, group string) {
	t.Helper()
	if _, err := c.EC2.AuthorizeSecurityGroupIngress(t.Context(), &ec2.AuthorizeSecurityGroupIngressInput{GroupId: &group, IpPermissions: []ec2types.IpPermission{{
		IpProtocol: sdk.String("-1"), UserIdGroupPairs: []ec2types.UserIdGroupPair{{GroupId: &group}},
	}}}); err != nil {
		t.Fatal(err)
	}
}

func rules(t *testing.T, c *aws.Clients, group string) (in, out []string) {
	t.Helper()
	h := &Hook{ec2: c.EC2}
	in, out, err := h.groupRules(t.Context(), group)
	if err != nil {
		t.Fatal(err)
	}
	return in, out
}

func TestDeleteEndsFleetStopsScalerEmptiesBuckets(t *testing.T) {
	c := moto.Clients(t)
	ctx := t.Context()
	fleet := unique("fleet")
	scaler := scalerFunction(t, c, fleet+"-scaler")
	ours := launch(t, c, fleet, 3, false)
	// One waits stopped in the warm pool: destroy removes it too.
	if _, err := c.EC2.CreateTags(ctx, &ec2.CreateTagsInput{Resources: ours[:1], Tags: []ec2types.Tag{{Key: sdk.String(aws.TagPool), Value: sdk.String("true")}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.EC2.StopInstances(ctx, &ec2.StopInstancesInput{InstanceIds: ours[:1]}); err != nil {
		t.Fatal(err)
	}
	foreign := append(launch(t, c, unique("other-fleet"), 1, false), launch(t, c, "", 1, false)...)
	plain := bucket(t, c, fleet+"-in", false)
	putObjects(t, c, plain, 1001) // more than one DeleteObjects batch
	versioned := bucket(t, c, fleet+"-out", true)
	putObjects(t, c, versioned, 3)
	putObjects(t, c, versioned, 3) // a second version of each
	if _, err := c.S3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &versioned, Key: sdk.String("object-0")}); err != nil {
		t.Fatal(err) // and a delete marker
	}

	// The scaler's window is measured on a clock the test moves, so an
	// instance launched "during the window" is launched during it for sure.
	var elapsed atomic.Int64
	start := time.Now()
	h := New(Config{
		Fleet: fleet, ScalerFunction: scaler, ScalerWindow: time.Minute, LaunchSettle: 5 * time.Second, Poll: 20 * time.Millisecond,
		EmptyBuckets: []string{plain, versioned, fleet + "-never-made"},
	}, c, testLog(t))
	h.now = func() time.Time { return start.Add(time.Duration(elapsed.Load())) }
	cf := newCloudFormation(t)
	ev := cf.event(cfn.RequestDelete, "surge-hooks-"+fleet)
	type result struct {
		answer map[string]any
		err    error
	}
	done := make(chan result, 1)
	go func() {
		a, err := cf.invoke(ctx, h, ev)
		done <- result{a, err}
	}()

	waitFor(t, done, "the fleet's instances terminated", func() bool { return allIn(t, c, ours, "terminated") })
	if got := concurrency(t, c, scaler); got == nil || *got != 0 {
		t.Fatalf("scaler's reserved concurrency %v, want 0", got)
	}
	// A scaler invocation that began before the stop launches one more.
	late := launch(t, c, fleet, 1, false)
	waitFor(t, done, "the late instance terminated", func() bool { return allIn(t, c, late, "terminated") })
	// Past the window, a launch answered late comes into view: the hook
	// still looks for it.
	elapsed.Store(int64(time.Minute + time.Second))
	later := launch(t, c, fleet, 1, false)
	waitFor(t, done, "the instance listed after the window terminated", func() bool { return allIn(t, c, later, "terminated") })
	select {
	case r := <-done:
		t.Fatalf("Delete answered within the scaler's window and its settling: %v %v", r.answer, r.err)
	default:
	}
	elapsed.Store(int64(time.Minute + 6*time.Second))
	var r result
	select {
	case r = <-done:
	case <-time.After(time.Minute):
		t.Fatal("no answer a minute after the scaler's window ended")
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	checkAnswer(t, r.answer, ev, "SUCCESS", "surge-hooks-"+fleet)
	if !allIn(t, c, foreign, "running") {
		t.Error("instances outside the fleet were touched")
	}
	for _, b := range []string{plain, versioned} {
		versions, err := c.S3.ListObjectVersions(ctx, &s3.ListObjectVersionsInput{Bucket: &b})
		if err != nil {
			t.Fatal(err)
		}
		if n := len(versions.Versions) + len(versions.DeleteMarkers); n != 0 {
			t.Errorf("bucket %s keeps %d versions and markers", b, n)
		}
	}
}

// Delete answers FAILED before the invocation's deadline, saying what is
// left, rather than never answering.
func TestDeleteAnswersFailedBeforeDeadline(t *testing.T) {
	c := moto.Clients(t)
	cf := newCloudFormation(t)

	t.Run("instance that will not terminate", func(t *testing.T) {
		fleet := unique("fleet")
		protected := launch(t, c, fleet, 1, true)
		t.Cleanup(func() {
			c.EC2.ModifyInstanceAttribute(context.Background(), &ec2.ModifyInstanceAttributeInput{
				InstanceId: &protected[0], DisableApiTermination: &ec2types.AttributeBooleanValue{Value: sdk.Bool(false)},
			})
			c.EC2.TerminateInstances(context.Background(), &ec2.TerminateInstancesInput{InstanceIds: protected})
		})
		others := launch(t, c, fleet, 2, false)
		h := New(Config{Fleet: fleet, Poll: 50 * time.Millisecond, Margin: 1500 * time.Millisecond, EmptyBuckets: []string{fleet + "-in"}}, c, testLog(t))
		ctx, cancel := context.WithTimeout(t.Context(), 4*time.Second)
		defer cancel()
		deadline, _ := ctx.Deadline()
		ev := cf.event(cfn.RequestDelete, "surge-hooks-"+fleet)
		answer, err := cf.invoke(ctx, h, ev)
		if err != nil {
			t.Fatal(err)
		}
		if !time.Now().Before(deadline) {
			t.Error("answered after the invocation's deadline")
		}
		checkAnswer(t, answer, ev, "FAILED", "surge-hooks-"+fleet)
		reason := answer["Reason"].(string)
		for _, want := range []string{protected[0], "not terminated", "OperationNotPermitted", "buckets not emptied: " + fleet + "-in"} {
			if !strings.Contains(reason, want) {
				t.Errorf("reason %q does not say %q", reason, want)
			}
		}
		// The protected instance did not keep its batch-mates alive.
		if !allIn(t, c, others, "terminated") {
			t.Error("the unprotected instances are not terminated")
		}
	})

	t.Run("scaler window longer than the deadline", func(t *testing.T) {
		fleet := unique("fleet")
		scaler := scalerFunction(t, c, fleet+"-scaler")
		h := New(Config{Fleet: fleet, ScalerFunction: scaler, ScalerWindow: time.Hour, Poll: 50 * time.Millisecond, Margin: time.Second}, c, testLog(t))
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		ev := cf.event(cfn.RequestDelete, "surge-hooks-"+fleet)
		answer, err := cf.invoke(ctx, h, ev)
		if err != nil {
			t.Fatal(err)
		}
		checkAnswer(t, answer, ev, "FAILED", "surge-hooks-"+fleet)
		if reason := answer["Reason"].(string); !strings.Contains(reason, "could still launch") || !strings.Contains(reason, scaler) {
			t.Errorf("reason %q does not say the scaler could still launch", reason)
		}
	})
}

// With no scaler to stop (gone already, as in a rollback before it was
// made), there is no window to wait out; an empty fleet is done at once.
func TestDeleteWithoutScaler(t *testing.T) {
	c := moto.Clients(t)
	fleet := unique("fleet")
	h := New(Config{Fleet: fleet, ScalerFunction: fleet + "-never-made", ScalerWindow: time.Hour, Poll: 50 * time.Millisecond}, c, testLog(t))
	cf := newCloudFormation(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	ev := cf.event(cfn.RequestDelete, "surge-hooks-"+fleet)
	answer, err := cf.invoke(ctx, h, ev)
	if err != nil {
		t.Fatal(err)
	}
	checkAnswer(t, answer, ev, "SUCCESS", "surge-hooks-"+fleet)
}

func TestUnknownRequestType(t *testing.T) {
	c := moto.Clients(t)
	h := New(Config{Fleet: "surge"}, c, testLog(t))
	cf := newCloudFormation(t)
	ev := cf.event("Rollback", "surge-hooks-surge")
	answer, err := cf.invoke(t.Context(), h, ev)
	if err != nil {
		t.Fatal(err)
	}
	checkAnswer(t, answer, ev, "FAILED", "surge-hooks-surge")
	if reason := answer["Reason"].(string); !strings.Contains(reason, `unknown request type "Rollback"`) {
		t.Errorf("reason %q", reason)
	}
}

// launch runs n instances tagged with the fleet ("" for none), with
// termination protection if protected.
func launch(t *testing.T, c *aws.Clients, fleet string, n int, protected bool) []string {
	t.Helper()
	in := &ec2.RunInstancesInput{
		ImageId: sdk.String("ami-12345678"), InstanceType: ec2types.InstanceTypeT3Micro,
		MinCount: sdk.Int32(int32(n)), MaxCount: sdk.Int32(int32(n)),
	}
	if fleet != "" {
		in.TagSpecifications = []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeInstance, Tags: []ec2types.Tag{
			{Key: sdk.String(aws.TagFleet), Value: &fleet}, {Key: sdk.String("Name"), Value: sdk.String("app-tier-instance-1")},
		}}}
	}
	out, err := c.EC2.RunInstances(t.Context(), in)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, i := range out.Instances {
		ids = append(ids, sdk.ToString(i.InstanceId))
		// moto 5.2.1 ignores RunInstances' DisableApiTermination, not
		// ModifyInstanceAttribute's.
		if protected {
			if _, err := c.EC2.ModifyInstanceAttribute(t.Context(), &ec2.ModifyInstanceAttributeInput{
				InstanceId: i.InstanceId, DisableApiTermination: &ec2types.AttributeBooleanValue{Value: sdk.Bool(true)},
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
	return ids
}

func allIn(t *testing.T, c *aws.Clients, ids []string, state ec2types.InstanceStateName) bool {
	t.Helper()
	out, err := c.EC2.DescribeInstances(t.Context(), &ec2.DescribeInstancesInput{InstanceIds: ids})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range out.Reservations {
		for _, i := range r.Instances {
			if i.State.Name != state {
				return false
			}
			n++
		}
	}
	return n == len(ids)
}

// waitFor polls cond until it holds, failing if the handler answers first
// or it takes unreasonably long.
func waitFor[T any](t *testing.T, done <-chan T, what string, cond func() bool) {
	t.Helper()
	timeout := time.After(time.Minute)
	for !cond() {
		select {
		case r := <-done:
			t.Fatalf("the handler answered before %s: %+v", what, r)
		case <-timeout:
			t.Fatalf("no %s within a minute", what)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// scalerFunction makes a Lambda function to stand for the scaler.
func scalerFunction(t *testing.T, c *aws.Clients, name string) string {
	t.Helper()
	moto.Function(t, c, name)
	return name
}

func concurrency(t *testing.T, c *aws.Clients, function string) *int32 {
	t.Helper()
	out, err := lambda.NewFromConfig(c.Config).GetFunctionConcurrency(t.Context(), &lambda.GetFunctionConcurrencyInput{FunctionName: &function})
	if err != nil {
		t.Fatal(err)
	}
	return out.ReservedConcurrentExecutions
}

func bucket(t *testing.T, c *aws.Clients, name string, versioned bool) string {
	t.Helper()
	ctx := t.Context()
	if _, err := c.S3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &name}); err != nil {
		t.Fatal(err)
	}
	if versioned {
		if _, err := c.S3.PutBucketVersioning(ctx, &s3.PutBucketVersioningInput{Bucket: &name,
			VersioningConfiguration: &s3types.VersioningConfiguration{Status: s3types.BucketVersioningStatusEnabled}}); err != nil {
			t.Fatal(err)
		}
	}
	return name
}

func putObjects(t *testing.T, c *aws.Clients, bucket string, n int) {
	t.Helper()
	var g errgroup.Group
	g.SetLimit(8)
	for i := range n {
		g.Go(func() error {
			_, err := c.S3.PutObject(t.Context(), &s3.PutObjectInput{Bucket: &bucket, Key: sdk.String(fmt.Sprintf("object-%d", i)), Body: strings.NewReader("x")})
			return err
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	out, err := c.S3.ListObjectsV2(t.Context(), &s3.ListObjectsV2Input{Bucket: &bucket})
	if err != nil || (n <= 1000 && len(out.Contents) < n) {
		t.Fatalf("bucket %s lists %d objects (%v), want %d", bucket, len(out.Contents), err, n)
	}
}

// throughPropagatingRole are clients that reach moto through the emulated
// endpoint as a caller whose new role is refused for propagation after
// its first call, as a stack's hook is on its first deploy.
func throughPropagatingRole(t *testing.T, propagation time.Duration) *aws.Clients {
	t.Helper()
	caller := unique("lambda-hooks")
	p := moto.Endpoint(t, moto.ProxyConfig{RolePropagation: map[string]time.Duration{caller: propagation}})
	c, err := aws.LoadClients(context.Background(), aws.Endpoint(p.URL(), "us-east-1", caller)...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// On create the hook's role may be seconds old: its first calls are
// refused until IAM has propagated it. The hook waits for it, within a
// bound, rather than fail the first deploy; past the bound it fails,
// saying so.
func TestCreateWaitsForItsRole(t *testing.T) {
	c := moto.Clients(t)
	vpc, group := vpcWithAWSDefaultGroup(t, c, "10.2.0.0/16")
	cf := newCloudFormation(t)

	var logs testenv.Buffer
	fleet := unique("fleet")
	h := New(Config{Fleet: fleet, VPCID: vpc}, throughPropagatingRole(t, 3*time.Second), slog.New(slog.NewTextHandler(&logs, nil)))
	ev := cf.event(cfn.RequestCreate, "")
	answer, err := cf.invoke(t.Context(), h, ev)
	if err != nil {
		t.Fatal(err)
	}
	checkAnswer(t, answer, ev, "SUCCESS", "surge-hooks-"+fleet)
	if in, out := rules(t, c, group); len(in)+len(out) != 0 {
		t.Fatalf("default group still has rules: in %v, out %v", in, out)
	}
	if !strings.Contains(logs.String(), "waiting for the hook's role") {
		t.Errorf("the wait is not logged:\n%s", logs.String())
	}

	h = New(Config{Fleet: fleet, VPCID: vpc, RoleWait: 2 * time.Second}, throughPropagatingRole(t, time.Hour), testLog(t))
	ev = cf.event(cfn.RequestCreate, "")
	if answer, err = cf.invoke(t.Context(), h, ev); err != nil {
		t.Fatal(err)
	}
	checkAnswer(t, answer, ev, "FAILED", "surge-hooks-"+fleet)
	reason := answer["Reason"].(string)
	for _, want := range []string{"UnauthorizedOperation", "ec2:DescribeSecurityGroups", "role", "2s"} {
		if !strings.Contains(reason, want) {
			t.Errorf("reason %q does not say %q", reason, want)
		}
	}
}
