package moto

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

func TestClockNeverGoesBack(t *testing.T) {
	c := NewClock()
	before := c.Now()
	c.Advance(-time.Hour)
	if c.Now().Before(before) {
		t.Error("a negative advance moved the clock back")
	}
	c.Advance(2 * time.Hour)
	if got := c.Now().Sub(before); got < 2*time.Hour {
		t.Errorf("advanced by %v, want at least 2h", got)
	}
}

// admin calls an admin endpoint and decodes its JSON answer.
func admin(t *testing.T, p *Proxy, method, path string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, p.URL()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp.StatusCode, out
}

func TestAdminEndpoints(t *testing.T) {
	p := start(t, ProxyConfig{})
	ctx := context.Background()

	status, clock := admin(t, p, http.MethodGet, "/_surge/clock")
	now, err := time.Parse(time.RFC3339, clock["now"].(string))
	if status != 200 || err != nil || time.Until(now).Abs() > time.Minute {
		t.Errorf("GET clock: %d %v", status, clock)
	}
	status, clock = admin(t, p, http.MethodPost, "/_surge/clock?advance=2h")
	advanced, _ := time.Parse(time.RFC3339, clock["now"].(string))
	if status != 200 || advanced.Sub(now) < 2*time.Hour || time.Until(p.Clock().Now()) < 2*time.Hour-time.Second {
		t.Errorf("POST clock?advance=2h: %d %v", status, clock)
	}
	if status, _ := admin(t, p, http.MethodPost, "/_surge/clock?advance=-1h"); status != 400 {
		t.Errorf("going back: %d", status)
	}

	status, state := admin(t, p, http.MethodPost, "/_surge/ec2?vcpuQuota=2&noCapacity=us-east-1a,us-east-1b")
	if status != 200 || state["vcpuQuota"] != 2.0 || len(state["noCapacity"].([]any)) != 2 {
		t.Errorf("POST ec2: %d %v", status, state)
	}
	e := ec2Client(p)
	_, err = run(t, e, &ec2.RunInstancesInput{InstanceType: types.InstanceTypeT3Small, Placement: &types.Placement{AvailabilityZone: aws.String("us-east-1b")}})
	if code, _, _ := apiError(t, err); code != "InsufficientInstanceCapacity" {
		t.Errorf("no capacity set through the admin endpoint: %s", code)
	}
	mustRun(t, e, &ec2.RunInstancesInput{InstanceType: types.InstanceTypeT3Small})
	_, err = run(t, e, &ec2.RunInstancesInput{InstanceType: types.InstanceTypeT3Small})
	if code, _, _ := apiError(t, err); code != "VcpuLimitExceeded" {
		t.Errorf("quota set through the admin endpoint: %s", code)
	}
	status, state = admin(t, p, http.MethodPost, "/_surge/ec2?noCapacity=")
	if status != 200 || state["vcpuQuota"] != 2.0 || len(state["noCapacity"].([]any)) != 0 {
		t.Errorf("clearing noCapacity: %d %v", status, state)
	}
	if status, _ := admin(t, p, http.MethodPost, "/_surge/ec2?vcpuQuota=many"); status != 400 {
		t.Errorf("a bad quota: %d", status)
	}
	status, state = admin(t, p, http.MethodPost, "/_surge/ec2?unsupported=us-east-1e:t3.small,us-east-1f:t3.small")
	if status != 200 || len(state["unsupported"].([]any)) != 2 {
		t.Errorf("POST ec2?unsupported: %d %v", status, state)
	}
	_, err = run(t, e, &ec2.RunInstancesInput{InstanceType: types.InstanceTypeT3Small, Placement: &types.Placement{AvailabilityZone: aws.String("us-east-1f")}})
	if code, _, _ := apiError(t, err); code != "Unsupported" {
		t.Errorf("an unsupported type set through the admin endpoint: %s", code)
	}
	if status, _ := admin(t, p, http.MethodPost, "/_surge/ec2?unsupported=us-east-1e"); status != 400 {
		t.Errorf("a zone without a type: %d", status)
	}
	if _, state = admin(t, p, http.MethodPost, "/_surge/ec2?unsupported="); len(state["unsupported"].([]any)) != 0 {
		t.Errorf("clearing unsupported: %v", state)
	}
	if status, state = admin(t, p, http.MethodPost, "/_surge/ec2?runInstancesDelay=1500ms"); status != 200 || state["runInstancesDelay"] != "1.5s" {
		t.Errorf("POST ec2?runInstancesDelay: %d %v", status, state)
	}
	// A malformed setting changes nothing, not even the good ones beside it.
	if status, _ := admin(t, p, http.MethodPost, "/_surge/ec2?vcpuQuota=4&runInstancesDelay=soon"); status != 400 {
		t.Errorf("a bad delay: %d", status)
	}
	if _, state = admin(t, p, http.MethodGet, "/_surge/ec2"); state["vcpuQuota"] != 2.0 || state["runInstancesDelay"] != "1.5s" {
		t.Errorf("after a refused POST: %v", state)
	}
	p.SetRunInstancesDelay(0)

	s := s3Client(p, "i-1")
	if _, err := s.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("admin-bucket")}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("admin-bucket"), Key: aws.String("k"), Body: strings.NewReader("x")}); err != nil {
		t.Fatal(err)
	}
	status, state = admin(t, p, http.MethodPost, "/_surge/fail-downloads?caller=i-1&fail=true")
	if status != 200 || len(state["failing"].([]any)) != 1 {
		t.Errorf("POST fail-downloads: %d %v", status, state)
	}
	_, err = s.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("admin-bucket"), Key: aws.String("k")})
	if code, _, _ := apiError(t, err); code != "AccessDenied" {
		t.Errorf("download by a failing caller: %s", code)
	}
	admin(t, p, http.MethodPost, "/_surge/fail-downloads?caller=i-1&fail=false")
	if _, err := s.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("admin-bucket"), Key: aws.String("k")}); err != nil {
		t.Errorf("after fail=false: %v", err)
	}
	if status, _ := admin(t, p, http.MethodPost, "/_surge/fail-downloads?caller=i-1"); status != 400 {
		t.Errorf("fail-downloads without fail: %d", status)
	}

	if status, _ := admin(t, p, http.MethodPut, "/_surge/cfn-response?request=nobody"); status != 400 {
		t.Errorf("an empty custom resource response: %d", status)
	}
	req, _ := http.NewRequest(http.MethodPut, p.URL()+"/_surge/cfn-response?request=nobody", strings.NewReader(`{"Status":"SUCCESS"}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("a response nobody waits for: %d", resp.StatusCode)
	}
	if status, _ := admin(t, p, http.MethodGet, "/_surge/nothing"); status != 404 {
		t.Errorf("unknown endpoint: %d", status)
	}
}

// A caller whose role is propagating has its first calls refused as each
// service refuses a role without the permission, then goes through;
// callers that match no pattern never wait.
func TestRolePropagation(t *testing.T) {
	p := start(t, ProxyConfig{RolePropagation: map[string]time.Duration{"lambda-*": 2 * time.Second}})
	ctx := context.Background()
	fresh := ec2.NewFromConfig(sdkConfig(p, "lambda-hooks"))
	_, err := fresh.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{})
	code, msg, status := apiError(t, err)
	if code != "UnauthorizedOperation" || status != 403 || !strings.Contains(msg, "not authorized to perform: ec2:DescribeSecurityGroups") {
		t.Errorf("EC2 while the role propagates: %s (%d) %q", code, status, msg)
	}
	if _, err := lambda.NewFromConfig(sdkConfig(p, "lambda-hooks")).GetAccountSettings(ctx, &lambda.GetAccountSettingsInput{}); err == nil {
		t.Error("Lambda while the role propagates: no error")
	} else if code, _, status := apiError(t, err); code != "AccessDeniedException" || status != 403 {
		t.Errorf("Lambda while the role propagates: %s (%d)", code, status)
	}
	if _, err := s3Client(p, "lambda-hooks").ListBuckets(ctx, &s3.ListBucketsInput{}); err == nil {
		t.Error("S3 while the role propagates: no error")
	} else if code, _, _ := apiError(t, err); code != "AccessDenied" {
		t.Errorf("S3 while the role propagates: %s", code)
	}
	if _, err := ec2Client(p).DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{}); err != nil {
		t.Errorf("a caller matching no pattern: %v", err)
	}
	eventually(t, "the role to propagate", func() bool {
		_, err := fresh.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{})
		return err == nil
	})
	// Another new caller waits from its own first call.
	if _, err := ec2.NewFromConfig(sdkConfig(p, "lambda-scaler")).DescribeInstances(ctx, &ec2.DescribeInstancesInput{}); err == nil {
		t.Error("a second new role's first call went through")
	}

	status, state := admin(t, p, http.MethodPost, "/_surge/iam?caller=i-*&propagation=1h")
	if status != 200 || state["propagation"].(map[string]any)["i-*"] != "1h0m0s" {
		t.Errorf("POST iam: %d %v", status, state)
	}
	if _, err := ec2.NewFromConfig(sdkConfig(p, "i-0123")).DescribeInstances(ctx, &ec2.DescribeInstancesInput{}); err == nil {
		t.Error("a caller set through the admin endpoint went through")
	}
	if _, state = admin(t, p, http.MethodPost, "/_surge/iam?caller=i-*&propagation=0"); len(state["propagation"].(map[string]any)) != 1 {
		t.Errorf("removing a pattern: %v", state)
	}
	if _, err := ec2.NewFromConfig(sdkConfig(p, "i-0123")).DescribeInstances(ctx, &ec2.DescribeInstancesInput{}); err != nil {
		t.Errorf("after the pattern was removed: %v", err)
	}
	for _, bad := range []string{"/_surge/iam?caller=x", "/_surge/iam?caller=[&propagation=1s", "/_surge/iam?propagation=1s"} {
		if status, _ := admin(t, p, http.MethodPost, bad); status != 400 {
			t.Errorf("%s: %d", bad, status)
		}
	}
}
