package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/surgeml/surge/internal/aws"
	"github.com/surgeml/surge/internal/emulate"
	"github.com/surgeml/surge/internal/moto"
	"github.com/surgeml/surge/internal/testenv"
)

// The deployment tests deploy the synthesized template into emulated AWS
// (moto behind the endpoint that adds AWS's behaviours; instances and
// Lambdas run by the emulator), as a first `cdk deploy` into a fresh
// account would: a Lambda concurrency limit of 10, and other accounts
// owning the course's bucket names.

func emulatedAccount(t *testing.T, tune ...func(*emulate.Config)) *emulate.Cloud {
	t.Helper()
	testenv.SkipShort(t, "moto_server and the CDK's jsii runtime (node)")
	cfg := emulate.Config{
		DataDir:   t.TempDir(),
		TimeScale: 0.02,
		Account:   emulate.Account{LambdaConcurrency: 10, TakenBucketNames: []string{"surge-in-bucket", "surge-out-bucket"}},
	}
	cfg.CDK, cfg.Repo = testenv.CDKCLI(t), testenv.Root(t)
	for _, f := range tune {
		f(&cfg)
	}
	cloud, err := emulate.Start(context.Background(), cfg, testenv.Logger(t, filepath.Join(cfg.DataDir, "logs"), "emulator.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cloud.Stop(context.Background())
		if t.Failed() {
			testenv.DumpLogs(t, cloud.Logs())
		}
	})
	return cloud
}

func deployStack(t *testing.T, cloud *emulate.Cloud, s *synthesis) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	st, err := cloud.Deploy(ctx, s.outdir, s.cfg.StackName)
	if err != nil {
		t.Fatalf("deploying %s: %v", s.cfg.StackName, err)
	}
	return st.Outputs
}

// Fault 1, reserved concurrency: a reservation leaves fewer than the 10
// unreserved executions Lambda keeps on an account whose limit is 10.
// Fault 9: the new VPC's default security group allows nothing, though
// the hook that closes it is refused its first calls while IAM
// propagates the role the stack has just made it (issue 20).
func TestDeploysIntoANewAccount(t *testing.T) {
	cloud := emulatedAccount(t, func(c *emulate.Config) { c.Account.RolePropagation = 3 * time.Second })
	ctx := context.Background()
	reserved := synthWith(t, map[string]any{"scalerReservedConcurrency": "1", "prefix": "reserved"})
	if _, err := cloud.Deploy(ctx, reserved.outdir, "reserved"); err == nil || !strings.Contains(err.Error(), "UnreservedConcurrentExecution") {
		t.Fatalf("a reservation on a 10-execution account deployed: %v", err)
	}

	s := synthWith(t, nil)
	outputs := deployStack(t, cloud, s)
	c := cloud.Clients
	q, err := c.SQS.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: sdk.String("surge-req-queue")})
	if err != nil {
		t.Fatal(err)
	}
	attrs, err := c.SQS.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: q.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameMaximumMessageSize, sqstypes.QueueAttributeNameRedrivePolicy},
	})
	if err != nil || attrs.Attributes["MaximumMessageSize"] != "1024" || !strings.Contains(attrs.Attributes["RedrivePolicy"], "surge-req-dlq") {
		t.Fatalf("request queue attributes %v, %v", attrs, err)
	}
	for _, o := range []string{"InputBucketName", "OutputBucketName"} {
		name := outputs[o]
		if name == "" || strings.HasPrefix(name, "surge-in-bucket") || strings.HasPrefix(name, "surge-out-bucket") {
			t.Errorf("%s = %q, want a unique name", o, name)
		}
		if _, err := c.S3.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: sdk.String(name)}); err != nil {
			t.Errorf("bucket %s: %v", name, err)
		}
	}
	if outputs["ResultsTableName"] != "surge-dynamoDB" {
		t.Errorf("ResultsTableName = %q", outputs["ResultsTableName"])
	}
	table, err := dynamodb.NewFromConfig(c.Config).DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: sdk.String("surge-dynamoDB")})
	if err != nil {
		t.Fatalf("the results table: %v", err)
	}
	if ks := table.Table.KeySchema; len(ks) != 1 || sdk.ToString(ks[0].AttributeName) != "name" || ks[0].KeyType != dbtypes.KeyTypeHash {
		t.Errorf("results table key schema %+v, want name alone", ks)
	}
	if b := table.Table.BillingModeSummary; b == nil || b.BillingMode != dbtypes.BillingModePayPerRequest {
		t.Errorf("results table billing %+v, want on demand", b)
	}
	web, err := c.EC2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{Filters: []ec2types.Filter{
		{Name: sdk.String("tag:Name"), Values: []string{"web-instance"}},
	}})
	if err != nil || len(web.Reservations) != 1 {
		t.Fatalf("web-instance: %v, %v", web, err)
	}
	vpc := sdk.ToString(web.Reservations[0].Instances[0].VpcId)
	groups, err := c.EC2.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{Filters: []ec2types.Filter{
		{Name: sdk.String("vpc-id"), Values: []string{vpc}}, {Name: sdk.String("group-name"), Values: []string{"default"}},
	}})
	if err != nil || len(groups.SecurityGroups) != 1 {
		t.Fatalf("default security group of %s: %v, %v", vpc, groups, err)
	}
	if g := groups.SecurityGroups[0]; len(g.IpPermissions) != 0 || len(g.IpPermissionsEgress) != 0 {
		t.Errorf("the default security group still allows traffic: in %v, out %v", g.IpPermissions, g.IpPermissionsEgress)
	}
	// Lambda retries no scaler invocation: a minute that is over is
	// another invocation's.
	invoke, err := lambda.NewFromConfig(c.Config).GetFunctionEventInvokeConfig(ctx, &lambda.GetFunctionEventInvokeConfigInput{FunctionName: sdk.String(outputs["ScalerFunction"])})
	if err != nil {
		t.Fatalf("the scaler's asynchronous invocation config: %v", err)
	}
	if sdk.ToInt32(invoke.MaximumRetryAttempts) != 0 || sdk.ToInt32(invoke.MaximumEventAgeInSeconds) != 60 {
		t.Errorf("the scaler is retried %d times, events up to %d s old", sdk.ToInt32(invoke.MaximumRetryAttempts), sdk.ToInt32(invoke.MaximumEventAgeInSeconds))
	}
	url, err := cloud.WebURL(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("deployed; web tier at %s", url)
}

// Fault 3, names that collide: two prefixes side by side in one account
// and region; the course's exact names only on request (and here other
// accounts own them, as the first deployer of "surge" would). Beside them
// the 2026 course's deployment, named after an ASU ID, in its stack
// surge-<ASU ID>.
func TestDeploymentsSideBySide(t *testing.T) {
	cloud := emulatedAccount(t)
	for _, prefix := range []string{"alpha", "beta"} {
		deployStack(t, cloud, synthWith(t, map[string]any{"prefix": prefix}))
	}
	asu := deployStack(t, cloud, synthWith(t, map[string]any{"prefix": "1225754101", "course": "2026"}))
	for o, want := range map[string]string{
		"RequestQueueName": "1225754101-req-queue", "InputBucketName": "1225754101-in-bucket", "ResultsTableName": "1225754101-dynamoDB",
	} {
		if asu[o] != want {
			t.Errorf("stack surge-1225754101: %s = %q, want %q", o, asu[o], want)
		}
	}
	course := synthWith(t, map[string]any{"courseNames": "true"})
	if _, err := cloud.Deploy(context.Background(), course.outdir, "surge"); err == nil || !strings.Contains(err.Error(), "surge-in-bucket") {
		t.Fatalf("a deployment took bucket names another account owns: %v", err)
	}
}

// Fault 7, destroy leaves instances behind; fault 3, deploy → destroy →
// deploy, and a redeploy within SQS's minute; issue 20, destroy races a
// launch. The scaler itself is launching workers (not the stack's
// resources), one at a time and each launch slow, when the stack is
// destroyed: its last launches come after the hook has stopped it.
// Nothing of the stack remains, no instance outlives it, a deploy right
// away is refused saying to wait, and a minute later the same prefix
// deploys again.
func TestDestroyDuringALaunchBurstThenDeployAgain(t *testing.T) {
	// Most of it is the destroy waiting out the scaler's minute: it runs
	// beside the other test that destroys.
	t.Parallel()
	cloud := emulatedAccount(t)
	ctx := context.Background()
	s := synthWith(t, nil)
	outputs := deployStack(t, cloud, s)
	c := cloud.Clients
	// Eight workers wanted at once (44 requests, sent in a moment), each
	// launch taking 8 s, longer than the hook's look at the fleet every 5 s:
	// a burst of a minute with gaps in it, which the destroy lands in.
	cloud.Endpoint.SetRunInstancesDelay(8 * time.Second)
	queue, err := c.SQS.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: sdk.String(outputs["RequestQueueName"])})
	if err != nil {
		t.Fatal(err)
	}
	// Queued while the scaler is stopped (as the destroy stops it), so
	// that its first launch is for all of them.
	scaler := lambda.NewFromConfig(c.Config)
	if _, err := scaler.PutFunctionConcurrency(ctx, &lambda.PutFunctionConcurrencyInput{
		FunctionName: sdk.String(outputs["ScalerFunction"]), ReservedConcurrentExecutions: sdk.Int32(0),
	}); err != nil {
		t.Fatal(err)
	}
	const requests = 44
	for first := 0; first < requests; first += 10 {
		var entries []sqstypes.SendMessageBatchRequestEntry
		for i := first; i < min(first+10, requests); i++ {
			id := fmt.Sprint(i)
			entries = append(entries, sqstypes.SendMessageBatchRequestEntry{Id: sdk.String(id), MessageBody: sdk.String(`{"n":` + id + `}`)})
		}
		if out, err := c.SQS.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: queue.QueueUrl, Entries: entries}); err != nil || len(out.Failed) > 0 {
			t.Fatalf("queueing requests: %v %v", out, err)
		}
	}
	if _, err := scaler.DeleteFunctionConcurrency(ctx, &lambda.DeleteFunctionConcurrencyInput{FunctionName: sdk.String(outputs["ScalerFunction"])}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.S3.PutObject(ctx, &s3.PutObjectInput{Bucket: sdk.String(outputs["InputBucketName"]), Key: sdk.String("x.jpg"), Body: strings.NewReader("x")}); err != nil {
		t.Fatal(err)
	}
	workers := aws.NewFleet(c.EC2, "surge", "surge-worker")
	waitUntil(t, 2*time.Minute, "burst of launches under way", func() bool {
		in, err := workers.List(ctx)
		return err == nil && len(in) >= 2
	})
	// No scaler invocation running now outlives the function's timeout
	// from here: what is left then was left for good.
	settled := time.Now().Add(70 * time.Second)
	start := time.Now()
	if err := cloud.Destroy(ctx, "surge"); err != nil {
		t.Fatal(err)
	}
	t.Logf("destroyed in %v", time.Since(start).Round(time.Second))
	time.Sleep(time.Until(settled))
	all, err := c.EC2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{Filters: []ec2types.Filter{
		{Name: sdk.String("instance-state-name"), Values: []string{"pending", "running", "stopping", "stopped", "shutting-down"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range all.Reservations {
		for _, in := range r.Instances {
			var tags []string
			for _, tg := range in.Tags {
				tags = append(tags, sdk.ToString(tg.Key)+"="+sdk.ToString(tg.Value))
			}
			t.Errorf("instance %s %v (%s) outlived the stack", sdk.ToString(in.InstanceId), tags, in.State.Name)
		}
	}
	if _, err := c.S3.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: sdk.String(outputs["InputBucketName"])}); err == nil {
		t.Error("the input bucket outlived the stack")
	}
	if _, err := c.SQS.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: sdk.String("surge-req-queue")}); err == nil {
		t.Error("the request queue outlived the stack")
	}
	// The table's name is fixed: had it outlived the stack, the next
	// deployment of the prefix would fail.
	var gone *dbtypes.ResourceNotFoundException
	if _, err := dynamodb.NewFromConfig(c.Config).DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: sdk.String("surge-dynamoDB")}); !errors.As(err, &gone) {
		t.Errorf("the results table outlived the stack: %v", err)
	}
	cloud.Endpoint.SetRunInstancesDelay(0)
	// SQS holds a deleted queue's name for 60 s: a deploy at once fails,
	// saying to wait; a minute later the same deploy (which first removes
	// the rolled-back stack, as cdk deploy does) succeeds.
	if _, err := cloud.Deploy(ctx, s.outdir, "surge"); err == nil || !strings.Contains(err.Error(), "wait 60 seconds") {
		t.Fatalf("a deploy right after destroy: %v; want SQS's QueueDeletedRecently, saying to wait", err)
	}
	cloud.Endpoint.Clock().Advance(moto.QueueNameHeld)
	deployStack(t, cloud, s)
}

// waitUntil polls cond until it holds, failing after limit.
func waitUntil(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v", what, limit)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Fault 5: an existing VPC whose subnets are not in the region's first
// zone.
func TestDeploysIntoAnExistingVpc(t *testing.T) {
	cloud := emulatedAccount(t)
	ctx := context.Background()
	c := cloud.Clients
	vpc, err := c.EC2.CreateVpc(ctx, &ec2.CreateVpcInput{CidrBlock: sdk.String("10.20.0.0/16")})
	if err != nil {
		t.Fatal(err)
	}
	var subnets []string
	for i, zone := range []string{"us-east-1c", "us-east-1d"} {
		sn, err := c.EC2.CreateSubnet(ctx, &ec2.CreateSubnetInput{
			VpcId: vpc.Vpc.VpcId, AvailabilityZone: sdk.String(zone), CidrBlock: sdk.String("10.20." + string(rune('1'+i)) + ".0/24"),
		})
		if err != nil {
			t.Fatal(err)
		}
		subnets = append(subnets, sdk.ToString(sn.Subnet.SubnetId))
	}
	s := synthWith(t, map[string]any{"vpcId": sdk.ToString(vpc.Vpc.VpcId), "subnetIds": strings.Join(subnets, ",")})
	deployStack(t, cloud, s)
	web, err := c.EC2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{Filters: []ec2types.Filter{{Name: sdk.String("tag:Name"), Values: []string{"web-instance"}}}})
	if err != nil || len(web.Reservations) != 1 {
		t.Fatalf("web-instance: %v, %v", web, err)
	}
	in := web.Reservations[0].Instances[0]
	if sdk.ToString(in.SubnetId) != subnets[0] || sdk.ToString(in.Placement.AvailabilityZone) != "us-east-1c" {
		t.Errorf("web instance in %s/%s, want %s/us-east-1c", sdk.ToString(in.SubnetId), sdk.ToString(in.Placement.AvailabilityZone), subnets[0])
	}
}

// The user's own commands, issue 20: the pinned CDK CLI bootstraps the
// emulated account, then deploys cdk.json's app exactly as a 2026 student
// does (`cdk deploy -c course=2026 -c prefix=<ASU ID>`, cdk.json's context
// included), then destroys it (`cdk destroy` with the same flags). After
// the deploy the course's names exist and the scaler's cap is the
// grader's 15; after the destroy nothing of the stack is left.
func TestCLIDeploysTheCourseStackAndDestroys(t *testing.T) {
	t.Parallel() // beside the other test that waits out a destroy
	cloud := emulatedAccount(t)
	ctx := context.Background()
	const asu = "1225754101"
	flags := []string{"course=2026", "prefix=" + asu}
	st, err := cloud.DeployApp(ctx, t.TempDir(), flags...)
	if err != nil {
		t.Fatal(err)
	}
	if st.Name != "surge-"+asu {
		t.Errorf("stack %q, want surge-%s", st.Name, asu)
	}
	c := cloud.Clients
	for _, q := range []string{asu + "-req-queue", asu + "-resp-queue"} {
		if _, err := c.SQS.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: sdk.String(q)}); err != nil {
			t.Errorf("queue %s: %v", q, err)
		}
	}
	for _, b := range []string{asu + "-in-bucket", asu + "-out-bucket"} {
		if _, err := c.S3.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: sdk.String(b)}); err != nil {
			t.Errorf("bucket %s: %v", b, err)
		}
	}
	db := dynamodb.NewFromConfig(c.Config)
	if _, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: sdk.String(asu + "-dynamoDB")}); err != nil {
		t.Errorf("table %s-dynamoDB: %v", asu, err)
	}
	if n := instances(t, cloud, []string{"running"}, ec2types.Filter{Name: sdk.String("tag:Name"), Values: []string{"web-instance"}}); n != 1 {
		t.Errorf("%d running web-instance, want 1", n)
	}
	scaler, err := lambda.NewFromConfig(c.Config).GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: sdk.String(st.Outputs["ScalerFunction"])})
	if err != nil {
		t.Fatal(err)
	}
	if got := scaler.Environment.Variables["SURGE_MAX_WORKERS"]; got != "15" {
		t.Errorf("the scaler's cap is %s, want the 2026 grader's 15", got)
	}

	if err := cloud.Destroy(ctx, st.Name); err != nil {
		t.Fatal(err)
	}
	if n := instances(t, cloud, []string{"pending", "running", "stopping", "stopped", "shutting-down"}); n != 0 {
		t.Errorf("%d instances outlived the stack", n)
	}
	queues, err := c.SQS.ListQueues(ctx, &sqs.ListQueuesInput{QueueNamePrefix: sdk.String(asu)})
	if err != nil || len(queues.QueueUrls) != 0 {
		t.Errorf("queues left: %v, %v", queues.QueueUrls, err)
	}
	buckets, err := c.S3.ListBuckets(ctx, &s3.ListBucketsInput{})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range buckets.Buckets {
		if strings.HasPrefix(sdk.ToString(b.Name), asu) {
			t.Errorf("bucket %s outlived the stack", sdk.ToString(b.Name))
		}
	}
	tables, err := db.ListTables(ctx, &dynamodb.ListTablesInput{})
	if err != nil || len(tables.TableNames) != 0 {
		t.Errorf("tables left: %v, %v", tables.TableNames, err)
	}
	if _, err := cloudformation.NewFromConfig(c.Config).DescribeStacks(ctx, &cloudformation.DescribeStacksInput{StackName: sdk.String(st.Name)}); err == nil {
		t.Errorf("stack %s still exists", st.Name)
	}
}

// instances counts the instances in states that match filters.
func instances(t *testing.T, cloud *emulate.Cloud, states []string, filters ...ec2types.Filter) int {
	t.Helper()
	out, err := cloud.Clients.EC2.DescribeInstances(context.Background(), &ec2.DescribeInstancesInput{
		Filters: append(filters, ec2types.Filter{Name: sdk.String("instance-state-name"), Values: states}),
	})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range out.Reservations {
		n += len(r.Instances)
	}
	return n
}
