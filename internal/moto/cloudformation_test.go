package moto

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	cfntypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
)

// testLambda is the test's stand-in for Lambda: it answers each custom
// resource event by PUTting to its ResponseURL, as cfn-response does.
type testLambda struct {
	answer func(event map[string]any) (status, reason string) // nil: SUCCESS
	silent bool                                               // never answer

	mu     sync.Mutex
	events []map[string]any
}

func (l *testLambda) Invoke(ctx context.Context, region, function string, payload []byte) error {
	var event map[string]any
	if err := json.Unmarshal(payload, &event); err != nil {
		return err
	}
	event["function"] = function
	l.mu.Lock()
	l.events = append(l.events, event)
	l.mu.Unlock()
	if l.silent {
		return nil
	}
	status, reason := "SUCCESS", ""
	if l.answer != nil {
		status, reason = l.answer(event)
	}
	logical := event["LogicalResourceId"].(string)
	reply, _ := json.Marshal(map[string]any{
		"Status": status, "Reason": reason, "PhysicalResourceId": "phys-" + logical,
		"StackId": event["StackId"], "RequestId": event["RequestId"], "LogicalResourceId": logical,
		"Data": map[string]any{"Value": "v-" + logical},
	})
	go func() {
		req, err := http.NewRequest(http.MethodPut, event["ResponseURL"].(string), bytes.NewReader(reply))
		if err != nil {
			panic(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
	}()
	return nil
}

func (l *testLambda) seen() []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]map[string]any(nil), l.events...)
}

// summary is "RequestType LogicalResourceId [PhysicalResourceId]" per event.
func (l *testLambda) summary() []string {
	var out []string
	for _, e := range l.seen() {
		s := fmt.Sprint(e["RequestType"], " ", e["LogicalResourceId"])
		if id, ok := e["PhysicalResourceId"]; ok {
			s += fmt.Sprint(" ", id)
		}
		out = append(out, s)
	}
	return out
}

func cfnClient(p *Proxy) *cloudformation.Client {
	return cloudformation.NewFromConfig(sdkConfig(p, "tester"))
}

func createStack(c *cloudformation.Client, name, body string, params ...cfntypes.Parameter) (string, error) {
	out, err := c.CreateStack(context.Background(), &cloudformation.CreateStackInput{
		StackName: aws.String(name), TemplateBody: aws.String(body), Parameters: params,
	})
	if err != nil {
		return "", err
	}
	return aws.ToString(out.StackId), nil
}

func describeStack(t *testing.T, c *cloudformation.Client, nameOrID string) (cfntypes.Stack, error) {
	t.Helper()
	out, err := c.DescribeStacks(context.Background(), &cloudformation.DescribeStacksInput{StackName: aws.String(nameOrID)})
	if err != nil {
		return cfntypes.Stack{}, err
	}
	return out.Stacks[0], nil
}

func waitForStatus(t *testing.T, c *cloudformation.Client, stack string, want cfntypes.StackStatus) cfntypes.Stack {
	t.Helper()
	var last cfntypes.Stack
	eventually(t, fmt.Sprintf("stack %s to be %s", stack, want), func() bool {
		s, err := describeStack(t, c, stack)
		if err != nil {
			t.Fatal(err)
		}
		last = s
		return s.StackStatus == want
	})
	return last
}

func stackEvents(t *testing.T, c *cloudformation.Client, stack string) []cfntypes.StackEvent {
	t.Helper()
	out, err := c.DescribeStackEvents(context.Background(), &cloudformation.DescribeStackEventsInput{StackName: aws.String(stack)})
	if err != nil {
		t.Fatal(err)
	}
	return out.StackEvents
}

const lambdaResources = `
	"Role": {"Type": "AWS::IAM::Role", "Properties": {"AssumeRolePolicyDocument": {"Version": "2012-10-17",
		"Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}}},
	"Fn": {"Type": "AWS::Lambda::Function", "Properties": {"Role": {"Fn::GetAtt": ["Role", "Arn"]},
		"Runtime": "python3.12", "Handler": "index.handler", "Code": {"ZipFile": "def handler(e, c): pass"}}}`

// customTemplate has two custom resources, the first in the template
// depending on the second, and an output from the first's Data.
const customTemplate = `{"Parameters": {"Size": {"Type": "Number", "Default": 3}}, "Resources": {` + lambdaResources + `,
	"Queue": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "cr-queue"}},
	"Second": {"Type": "Custom::Thing", "Properties": {"ServiceToken": {"Fn::GetAtt": ["Fn", "Arn"]},
		"From": {"Fn::GetAtt": ["First", "Value"]}}},
	"First": {"Type": "Custom::Thing", "Properties": {"ServiceToken": {"Fn::GetAtt": ["Fn", "Arn"]},
		"Queue": {"Ref": "Queue"}, "Region": {"Ref": "AWS::Region"}, "Size": {"Ref": "Size"}}}
	},
	"Outputs": {"Out": {"Value": {"Fn::GetAtt": ["Second", "Value"]}}}}`

func TestCustomResourcesCreateAndDelete(t *testing.T) {
	lambdas := &testLambda{}
	p := start(t, ProxyConfig{Lambdas: lambdas})
	c := cfnClient(p)
	id, err := createStack(c, "cr", customTemplate)
	if err != nil {
		t.Fatal(err)
	}
	stack := waitForStatus(t, c, "cr", cfntypes.StackStatusCreateComplete)
	if len(stack.Outputs) != 1 || aws.ToString(stack.Outputs[0].OutputValue) != "v-Second" {
		t.Errorf("outputs = %+v, want Out = v-Second", stack.Outputs)
	}
	if got, want := strings.Join(lambdas.summary(), "; "), "Create First; Create Second"; got != want {
		t.Errorf("events = %s, want %s", got, want)
	}
	first := lambdas.seen()[0]
	props := first["ResourceProperties"].(map[string]any)
	if !strings.HasSuffix(fmt.Sprint(props["Queue"]), "/cr-queue") || props["Region"] != region || props["Size"] != 3.0 ||
		props["ServiceToken"] != "arn:aws:lambda:us-east-1:123456789012:function:"+first["function"].(string) || first["ServiceToken"] != props["ServiceToken"] {
		t.Errorf("First's properties: %v", props)
	}
	if first["StackId"] != id || first["ResourceType"] != "Custom::Thing" || first["RequestId"] == "" {
		t.Errorf("First's event: %v", first)
	}
	if from := lambdas.seen()[1]["ResourceProperties"].(map[string]any)["From"]; from != "v-First" {
		t.Errorf("Second got From = %v, want First's Data", from)
	}

	if _, err := c.DeleteStack(context.Background(), &cloudformation.DeleteStackInput{StackName: aws.String("cr")}); err != nil {
		t.Fatal(err)
	}
	waitForStatus(t, c, id, cfntypes.StackStatusDeleteComplete)
	if got, want := strings.Join(lambdas.summary()[2:], "; "), "Delete Second phys-Second; Delete First phys-First"; got != want {
		t.Errorf("delete events = %s, want %s", got, want)
	}
	if _, err := describeStack(t, c, "cr"); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("describing the deleted stack by name: %v, want does not exist", err)
	}
}

func TestCustomResourceFailureRollsBack(t *testing.T) {
	lambdas := &testLambda{answer: func(e map[string]any) (string, string) {
		if e["LogicalResourceId"] == "Second" && e["RequestType"] == "Create" {
			return "FAILED", "boom"
		}
		return "SUCCESS", ""
	}}
	p := start(t, ProxyConfig{Lambdas: lambdas})
	c := cfnClient(p)
	if _, err := createStack(c, "cr", customTemplate); err != nil {
		t.Fatal(err)
	}
	stack := waitForStatus(t, c, "cr", cfntypes.StackStatusRollbackComplete)
	if got := aws.ToString(stack.StackStatusReason); got != "The following resource(s) failed to create: [Second]. " {
		t.Errorf("reason = %q", got)
	}
	if len(stack.Outputs) != 0 {
		t.Errorf("a rolled back stack shows outputs %v", stack.Outputs)
	}
	// First was created, so the rollback deletes it.
	if got, want := strings.Join(lambdas.summary(), "; "), "Create First; Create Second; Delete First phys-First"; got != want {
		t.Errorf("events = %s, want %s", got, want)
	}
	found := false
	for _, e := range stackEvents(t, c, "cr") {
		if aws.ToString(e.LogicalResourceId) == "Second" && e.ResourceStatus == cfntypes.ResourceStatusCreateFailed &&
			strings.HasPrefix(aws.ToString(e.ResourceStatusReason), "Received response status [FAILED] from custom resource. Message returned: boom") {
			found = true
		}
	}
	if !found {
		t.Errorf("no CREATE_FAILED event for Second in %+v", stackEvents(t, c, "cr"))
	}
	summaries, err := c.ListStacks(context.Background(), &cloudformation.ListStacksInput{})
	if err != nil {
		t.Fatal(err)
	}
	if len(summaries.StackSummaries) != 1 || summaries.StackSummaries[0].StackStatus != cfntypes.StackStatusRollbackComplete {
		t.Errorf("ListStacks: %+v", summaries.StackSummaries)
	}
}

func TestCustomResourceTimeout(t *testing.T) {
	p := start(t, ProxyConfig{Lambdas: &testLambda{silent: true}, CustomResourceTimeout: 100 * time.Millisecond})
	c := cfnClient(p)
	if _, err := createStack(c, "cr", customTemplate); err != nil {
		t.Fatal(err)
	}
	waitForStatus(t, c, "cr", cfntypes.StackStatusRollbackComplete)
	for _, e := range stackEvents(t, c, "cr") {
		if e.ResourceStatus == cfntypes.ResourceStatusCreateFailed &&
			strings.HasPrefix(aws.ToString(e.ResourceStatusReason), "CloudFormation did not receive a response from your Custom Resource.") {
			return
		}
	}
	t.Error("no event says the custom resource did not answer")
}

func TestCustomResourceWithoutInvoker(t *testing.T) {
	p := start(t, ProxyConfig{})
	c := cfnClient(p)
	if _, err := createStack(c, "cr", customTemplate); err != nil {
		t.Fatal(err)
	}
	stack := waitForStatus(t, c, "cr", cfntypes.StackStatusRollbackComplete)
	if !strings.Contains(aws.ToString(stack.StackStatusReason), "no Lambda invoker") {
		t.Errorf("reason = %q", aws.ToString(stack.StackStatusReason))
	}
}

func TestDeleteFailsWhileForeignInstanceUsesSecurityGroup(t *testing.T) {
	lambdas := &testLambda{}
	p := start(t, ProxyConfig{Lambdas: lambdas, ShuttingDownFor: time.Minute})
	c := cfnClient(p)
	e := ec2Client(p)
	ctx := context.Background()
	vpcs, err := e.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{})
	if err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf(`{"Resources": {`+lambdaResources+`,
		"Group": {"Type": "AWS::EC2::SecurityGroup", "Properties": {"GroupDescription": "workers", "VpcId": %q}},
		"Cleanup": {"Type": "Custom::Cleanup", "Properties": {"ServiceToken": {"Fn::GetAtt": ["Fn", "Arn"]}, "Group": {"Ref": "Group"}}}
		}, "Outputs": {"Group": {"Value": {"Ref": "Group"}}}}`, *vpcs.Vpcs[0].VpcId)
	id, err := createStack(c, "sg", body)
	if err != nil {
		t.Fatal(err)
	}
	stack := waitForStatus(t, c, "sg", cfntypes.StackStatusCreateComplete)
	group := aws.ToString(stack.Outputs[0].OutputValue)
	if got := lambdas.seen()[0]["ResourceProperties"].(map[string]any)["Group"]; got != group {
		t.Errorf("Cleanup got Group = %v, want %s", got, group)
	}
	// An instance the stack does not own, in the stack's group.
	out := mustRun(t, e, &ec2.RunInstancesInput{InstanceType: ec2types.InstanceTypeT3Small, SecurityGroupIds: []string{group}})
	worker := *out.Instances[0].InstanceId

	if _, err := c.DeleteStack(ctx, &cloudformation.DeleteStackInput{StackName: aws.String("sg")}); err != nil {
		t.Fatal(err)
	}
	failed := waitForStatus(t, c, "sg", cfntypes.StackStatusDeleteFailed)
	if got := aws.ToString(failed.StackStatusReason); got != "The following resource(s) failed to delete: [Group]. " {
		t.Errorf("reason = %q", got)
	}
	if got := lambdas.summary(); len(got) != 2 || got[1] != "Delete Cleanup phys-Cleanup" {
		t.Errorf("custom resource events = %v, want its Delete before the group's", got)
	}
	found := false
	for _, ev := range stackEvents(t, c, "sg") {
		if aws.ToString(ev.LogicalResourceId) == "Group" && ev.ResourceStatus == cfntypes.ResourceStatusDeleteFailed &&
			aws.ToString(ev.ResourceStatusReason) == "resource "+group+" has a dependent object" {
			found = true
		}
	}
	if !found {
		t.Error("no DELETE_FAILED event for the group")
	}

	// Once the instance is terminating, a retry waits for it to end.
	terminate(t, e, worker)
	if _, err := c.DeleteStack(ctx, &cloudformation.DeleteStackInput{StackName: aws.String("sg")}); err != nil {
		t.Fatal(err)
	}
	waitForStatus(t, c, id, cfntypes.StackStatusDeleteInProgress)
	time.Sleep(300 * time.Millisecond) // a few dependency checks, all waiting
	if s, _ := describeStack(t, c, id); s.StackStatus != cfntypes.StackStatusDeleteInProgress {
		t.Errorf("while the instance shuts down the stack is %s", s.StackStatus)
	}
	p.Clock().Advance(time.Minute)
	waitForStatus(t, c, id, cfntypes.StackStatusDeleteComplete)
	if n := len(lambdas.seen()); n != 2 {
		t.Errorf("the retry ran the custom resource again: %v", lambdas.summary())
	}
}

func TestPreflightReservedConcurrency(t *testing.T) {
	p := start(t, ProxyConfig{ConcurrencyLimit: 10})
	c := cfnClient(p)
	body := `{"Resources": {` + strings.Replace(lambdaResources, `"Code"`, `"ReservedConcurrentExecutions": 1, "Code"`, 1) + `}}`
	_, err := createStack(c, "fn", body)
	code, msg, status := apiError(t, err)
	if code != "ValidationError" || status != 400 || !strings.HasPrefix(msg, `Fn: Resource handler returned message: "`+reservationMessage()) {
		t.Errorf("reserving 1 of 10: %s (%d) %q", code, status, msg)
	}
	if _, err := describeStack(t, c, "fn"); err == nil {
		t.Error("the refused stack exists")
	}
	c = cfnClient(start(t, ProxyConfig{ConcurrencyLimit: 11}))
	if _, err := createStack(c, "fn", body); err != nil {
		t.Errorf("reserving 1 of 11: %v", err)
	}
	// The stack's own reservation does not count twice on update.
	_, err = c.UpdateStack(context.Background(), &cloudformation.UpdateStackInput{StackName: aws.String("fn"), TemplateBody: aws.String(body)})
	if err != nil && strings.Contains(err.Error(), "UnreservedConcurrentExecution") {
		t.Errorf("updating the stack: %v", err)
	}
	bigger := strings.Replace(body, `"ReservedConcurrentExecutions": 1`, `"ReservedConcurrentExecutions": 2`, 1)
	_, err = c.UpdateStack(context.Background(), &cloudformation.UpdateStackInput{StackName: aws.String("fn"), TemplateBody: aws.String(bigger)})
	if code, _, _ := apiError(t, err); code != "ValidationError" {
		t.Errorf("updating to 2 of 11: %s", code)
	}
}

func TestPreflightTakenBucketName(t *testing.T) {
	p := start(t, ProxyConfig{TakenBucketNames: []string{"surge-in-bucket"}})
	c := cfnClient(p)
	body := `{"Parameters": {"Prefix": {"Type": "String", "Default": "surge"}},
		"Resources": {"In": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": {"Fn::Join": ["-", [{"Ref": "Prefix"}, "in-bucket"]]}}}}}`
	_, err := createStack(c, "b", body)
	if code, msg, _ := apiError(t, err); code != "ValidationError" || msg != "In: surge-in-bucket already exists" {
		t.Errorf("taken bucket: %s %q", code, msg)
	}
	if _, err := createStack(c, "b", body, cfntypes.Parameter{ParameterKey: aws.String("Prefix"), ParameterValue: aws.String("mine")}); err != nil {
		t.Errorf("a free bucket name: %v", err)
	}
}

func TestPreflightNamesInUse(t *testing.T) {
	p := start(t, ProxyConfig{})
	c := cfnClient(p)
	ctx := context.Background()
	q := sqs.NewFromConfig(sdkConfig(p, "tester"))
	if _, err := q.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("surge-req-queue")}); err != nil {
		t.Fatal(err)
	}
	createRole(t, "surge-worker-role")
	cases := map[string]string{
		`"Q": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "surge-req-queue"}}`:                                 "Q: Resource of type 'AWS::SQS::Queue' with identifier 'surge-req-queue' already exists.",
		`"R": {"Type": "AWS::IAM::Role", "Properties": {"RoleName": "surge-worker-role", "AssumeRolePolicyDocument": {}}}`: "R: Resource of type 'AWS::IAM::Role' with identifier 'surge-worker-role' already exists.",
	}
	for resource, want := range cases {
		_, err := createStack(c, "names", `{"Resources": {`+resource+`}}`)
		if code, msg, _ := apiError(t, err); code != "ValidationError" || msg != want {
			t.Errorf("%s: %s %q", resource, code, msg)
		}
	}
	// Log groups and launch templates, made by a first stack.
	first := `{"Resources": {
		"Logs": {"Type": "AWS::Logs::LogGroup", "Properties": {"LogGroupName": "/surge/scaler"}},
		"LT": {"Type": "AWS::EC2::LaunchTemplate", "Properties": {"LaunchTemplateName": "surge-worker", "LaunchTemplateData": {"ImageId": "ami-12345678"}}}}}`
	if _, err := createStack(c, "first", first); err != nil {
		t.Fatal(err)
	}
	_, err := createStack(c, "second", first)
	if code, msg, _ := apiError(t, err); code != "ValidationError" || !strings.Contains(msg, "already exists.") {
		t.Errorf("a second stack with the same names: %s %q", code, msg)
	}
	if _, err := createStack(c, "third", strings.ReplaceAll(strings.ReplaceAll(first, "/surge/", "/other/"), "surge-worker", "other-worker")); err != nil {
		t.Errorf("other names: %v", err)
	}
}

func TestPreflightInstanceSubnetAZ(t *testing.T) {
	p := start(t, ProxyConfig{})
	c := cfnClient(p)
	subnets, err := ec2Client(p).DescribeSubnets(context.Background(), &ec2.DescribeSubnetsInput{
		Filters: []ec2types.Filter{{Name: aws.String("availability-zone"), Values: []string{"us-east-1b"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	subnet := *subnets.Subnets[0].SubnetId
	body := `{"Parameters": {"Subnets": {"Type": "List<AWS::EC2::Subnet::Id>"}},
		"Resources": {"Web": {"Type": "AWS::EC2::Instance", "Properties": {"ImageId": "ami-12345678", "InstanceType": "t3.micro",
			"SubnetId": {"Fn::Select": [0, {"Ref": "Subnets"}]}, "AvailabilityZone": {"Fn::Select": [0, {"Fn::GetAZs": ""}]}}}}}`
	param := cfntypes.Parameter{ParameterKey: aws.String("Subnets"), ParameterValue: aws.String(subnet)}
	_, err = createStack(c, "web", body, param)
	want := fmt.Sprintf("Web: Value (us-east-1a) for parameter availabilityZone is invalid. Subnet '%s' is in the availability zone us-east-1b", subnet)
	if code, msg, _ := apiError(t, err); code != "ValidationError" || msg != want {
		t.Errorf("subnet in another zone: %s %q", code, msg)
	}
	fixed := strings.Replace(body, `{"Fn::Select": [0, {"Fn::GetAZs": ""}]}`, `{"Fn::Select": [1, {"Fn::GetAZs": ""}]}`, 1)
	if _, err := createStack(c, "web", fixed, param); err != nil {
		t.Errorf("subnet in the instance's zone: %v", err)
	}
}

func TestPreflightReadsTemplateURL(t *testing.T) {
	p := start(t, ProxyConfig{TakenBucketNames: []string{"surge-in-bucket"}})
	ctx := context.Background()
	s := s3Client(p, "tester")
	if _, err := s.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("templates")}); err != nil {
		t.Fatal(err)
	}
	body := `{"Resources": {"In": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": "surge-in-bucket"}}}}`
	if _, err := s.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("templates"), Key: aws.String("stack.json"), Body: strings.NewReader(body)}); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"https://s3.amazonaws.com/templates/stack.json", "https://templates.s3.us-east-1.amazonaws.com/stack.json", p.URL() + "/templates/stack.json"} {
		_, err := cfnClient(p).CreateStack(ctx, &cloudformation.CreateStackInput{StackName: aws.String("from-url"), TemplateURL: aws.String(u)})
		if code, msg, _ := apiError(t, err); code != "ValidationError" || msg != "In: surge-in-bucket already exists" {
			t.Errorf("%s: %s %q", u, code, msg)
		}
	}
}

// AWS::Lambda::EventInvokeConfig, a type moto's CloudFormation skips, is
// carried out: the function's asynchronous invocation settings are the
// template's, on create and on update; one that cannot be carried out
// fails the stack rather than vanish from it.
func TestEventInvokeConfigApplied(t *testing.T) {
	p := start(t, ProxyConfig{})
	c := cfnClient(p)
	ctx := context.Background()
	config := func(retries, age int) string {
		return fmt.Sprintf(`{"Resources": {`+lambdaResources+`,
	"Async": {"Type": "AWS::Lambda::EventInvokeConfig", "Properties": {"FunctionName": {"Ref": "Fn"}, "Qualifier": "$LATEST",
		"MaximumRetryAttempts": %d, "MaximumEventAgeInSeconds": %d}}}}`, retries, age)
	}
	if _, err := createStack(c, "async", config(0, 60)); err != nil {
		t.Fatal(err)
	}
	waitForStatus(t, c, "async", cfntypes.StackStatusCreateComplete)
	fns, err := lambda.NewFromConfig(sdkConfig(p, "tester")).ListFunctions(ctx, &lambda.ListFunctionsInput{})
	if err != nil || len(fns.Functions) != 1 {
		t.Fatalf("functions: %v, %v", fns, err)
	}
	fn := fns.Functions[0].FunctionName
	got := func() (int32, int32) {
		t.Helper()
		out, err := lambda.NewFromConfig(sdkConfig(p, "tester")).GetFunctionEventInvokeConfig(ctx, &lambda.GetFunctionEventInvokeConfigInput{FunctionName: fn})
		if err != nil {
			t.Fatalf("the stack's event invoke config: %v", err)
		}
		return aws.ToInt32(out.MaximumRetryAttempts), aws.ToInt32(out.MaximumEventAgeInSeconds)
	}
	if retries, age := got(); retries != 0 || age != 60 {
		t.Errorf("after create: %d retries, events up to %d s old; want 0 and 60", retries, age)
	}
	if _, err := c.UpdateStack(ctx, &cloudformation.UpdateStackInput{StackName: aws.String("async"), TemplateBody: aws.String(config(1, 300))}); err != nil {
		t.Fatal(err)
	}
	waitForStatus(t, c, "async", cfntypes.StackStatusUpdateComplete)
	if retries, age := got(); retries != 1 || age != 300 {
		t.Errorf("after update: %d retries, events up to %d s old; want 1 and 300", retries, age)
	}

	broken := `{"Resources": {"Async": {"Type": "AWS::Lambda::EventInvokeConfig", "Properties": {"FunctionName": "never-made", "Qualifier": "$LATEST", "MaximumRetryAttempts": 0}}}}`
	if _, err := createStack(c, "broken", broken); err != nil {
		t.Fatal(err)
	}
	stack := waitForStatus(t, c, "broken", cfntypes.StackStatusRollbackComplete)
	if reason := aws.ToString(stack.StackStatusReason); !strings.Contains(reason, "[Async]") || !strings.Contains(reason, "never-made") {
		t.Errorf("reason = %q, want it to name Async and the function", reason)
	}
}
