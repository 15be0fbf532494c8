package moto

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	cfntypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// changeSetFromURL puts body where the CDK CLI puts a template (the
// bootstrap bucket, at this endpoint's URL, path-style) and creates a
// change set of it, as the CLI does; it returns the change set's and its
// stack's ids.
func changeSetFromURL(t *testing.T, p *Proxy, stack, body string, kind cfntypes.ChangeSetType, params ...cfntypes.Parameter) (string, string) {
	t.Helper()
	ctx := context.Background()
	s := s3Client(p, "tester")
	if _, err := s.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String("assets")}); err != nil {
		if _, err := s.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("assets")}); err != nil {
			t.Fatal(err)
		}
	}
	key := stack + "-" + string(kind) + ".json"
	if _, err := s.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("assets"), Key: aws.String(key), Body: strings.NewReader(body)}); err != nil {
		t.Fatal(err)
	}
	out, err := cfnClient(p).CreateChangeSet(ctx, &cloudformation.CreateChangeSetInput{
		StackName: aws.String(stack), ChangeSetName: aws.String("cdk-deploy-change-set"), ChangeSetType: kind,
		TemplateURL: aws.String(p.URL() + "/assets/" + key), Parameters: params,
	})
	if err != nil {
		t.Fatalf("creating a change set from this endpoint's template URL: %v", err)
	}
	return aws.ToString(out.Id), aws.ToString(out.StackId)
}

// A change set from a template URL at this endpoint, executed: the stack
// is created as CreateStack would (custom resources run, outputs shown)
// and can be followed by the id the change set gave; then an update
// change set updates it.
func TestChangeSetsCreateAndUpdate(t *testing.T) {
	lambdas := &testLambda{}
	p := start(t, ProxyConfig{Lambdas: lambdas})
	c := cfnClient(p)
	ctx := context.Background()
	csID, reviewID := changeSetFromURL(t, p, "cs", customTemplate, cfntypes.ChangeSetTypeCreate)
	if st, err := describeStack(t, c, "cs"); err != nil || st.StackStatus != cfntypes.StackStatusReviewInProgress {
		t.Fatalf("before execution: %+v, %v", st.StackStatus, err)
	}
	if _, err := c.ExecuteChangeSet(ctx, &cloudformation.ExecuteChangeSetInput{ChangeSetName: aws.String(csID)}); err != nil {
		t.Fatal(err)
	}
	stack := waitForStatus(t, c, reviewID, cfntypes.StackStatusCreateComplete)
	if len(stack.Outputs) != 1 || aws.ToString(stack.Outputs[0].OutputValue) != "v-Second" {
		t.Errorf("outputs = %+v, want Out = v-Second", stack.Outputs)
	}
	if got, want := strings.Join(lambdas.summary(), "; "), "Create First; Create Second"; got != want {
		t.Errorf("custom resources: %s, want %s", got, want)
	}
	if byName, err := describeStack(t, c, "cs"); err != nil || aws.ToString(byName.StackId) != aws.ToString(stack.StackId) {
		t.Errorf("by name: %v, %v", byName.StackId, err)
	}
	if _, err := c.DescribeChangeSet(ctx, &cloudformation.DescribeChangeSetInput{ChangeSetName: aws.String(csID)}); err == nil {
		t.Error("an executed change set is still there")
	}

	// Before an update the CLI deletes any change set of the name it
	// uses, and waits until describing it answers ChangeSetNotFound.
	if _, err := c.DeleteChangeSet(ctx, &cloudformation.DeleteChangeSetInput{ChangeSetName: aws.String("cdk-deploy-change-set"), StackName: aws.String("cs")}); err != nil {
		t.Fatalf("deleting a change set that is not there: %v", err)
	}
	_, err := c.DescribeChangeSet(ctx, &cloudformation.DescribeChangeSetInput{ChangeSetName: aws.String("cdk-deploy-change-set"), StackName: aws.String("cs")})
	var notFound *cfntypes.ChangeSetNotFoundException
	if !errors.As(err, &notFound) {
		t.Fatalf("describing a change set that is not there: %v, want ChangeSetNotFound", err)
	}

	// The update keeps the parameter's value, which was its default, as
	// the CLI asks for every parameter of a deployed stack.
	updated := strings.Replace(customTemplate, `"QueueName": "cr-queue"`, `"QueueName": "cr-queue", "DelaySeconds": 5`, 1)
	csID, _ = changeSetFromURL(t, p, "cs", updated, cfntypes.ChangeSetTypeUpdate,
		cfntypes.Parameter{ParameterKey: aws.String("Size"), UsePreviousValue: aws.Bool(true)})
	if _, err := c.ExecuteChangeSet(ctx, &cloudformation.ExecuteChangeSetInput{ChangeSetName: aws.String(csID), StackName: aws.String("cs")}); err != nil {
		t.Fatal(err)
	}
	waitForStatus(t, c, "cs", cfntypes.StackStatusUpdateComplete)
	tmpl, err := c.GetTemplate(ctx, &cloudformation.GetTemplateInput{StackName: aws.String("cs")})
	if err != nil || !strings.Contains(aws.ToString(tmpl.TemplateBody), "DelaySeconds") {
		t.Errorf("the stack's template after the update: %v", err)
	}
}

// A change set whose resources cannot be made leaves the stack rolled
// back with the failed resource's event, as on AWS, and the next deploy
// can delete it.
func TestChangeSetFailureRollsBack(t *testing.T) {
	p := start(t, ProxyConfig{TakenBucketNames: []string{"surge-in-bucket"}})
	c := cfnClient(p)
	ctx := context.Background()
	body := `{"Resources": {"In": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": "surge-in-bucket"}}}}`
	csID, reviewID := changeSetFromURL(t, p, "taken", body, cfntypes.ChangeSetTypeCreate)
	if _, err := c.ExecuteChangeSet(ctx, &cloudformation.ExecuteChangeSetInput{ChangeSetName: aws.String(csID)}); err != nil {
		t.Fatal(err)
	}
	stack := waitForStatus(t, c, reviewID, cfntypes.StackStatusRollbackComplete)
	if got := aws.ToString(stack.StackStatusReason); got != "The following resource(s) failed to create: [In]. " {
		t.Errorf("reason = %q", got)
	}
	found := false
	for _, e := range stackEvents(t, c, reviewID) {
		found = found || aws.ToString(e.LogicalResourceId) == "In" && e.ResourceStatus == cfntypes.ResourceStatusCreateFailed &&
			aws.ToString(e.ResourceStatusReason) == "surge-in-bucket already exists" && aws.ToString(e.ResourceType) == "AWS::S3::Bucket"
	}
	if !found {
		t.Errorf("no CREATE_FAILED event for In: %+v", stackEvents(t, c, reviewID))
	}
	if _, err := c.DeleteStack(ctx, &cloudformation.DeleteStackInput{StackName: aws.String("taken")}); err != nil {
		t.Fatal(err)
	}
	waitForStatus(t, c, reviewID, cfntypes.StackStatusDeleteComplete)
}

// An Elastic IP's association, a resource type moto does not implement,
// puts the address on the stack's instance, and on its replacement after
// an update.
func TestEIPAssociationFollowsTheInstance(t *testing.T) {
	p := start(t, ProxyConfig{})
	c := cfnClient(p)
	ctx := context.Background()
	tmpl := func(instance string) string {
		return `{"Resources": {"` + instance + `": {"Type": "AWS::EC2::Instance", "Properties": {"ImageId": "ami-12345678", "InstanceType": "t3.small"}},
			"Address": {"Type": "AWS::EC2::EIP", "Properties": {"Domain": "vpc"}},
			"Association": {"Type": "AWS::EC2::EIPAssociation", "Properties": {
				"AllocationId": {"Fn::GetAtt": ["Address", "AllocationId"]}, "InstanceId": {"Ref": "` + instance + `"}}}},
			"Outputs": {"Url": {"Value": {"Ref": "Address"}}}}`
	}
	associated := func(logicalID string) {
		t.Helper()
		res, err := c.DescribeStackResource(ctx, &cloudformation.DescribeStackResourceInput{StackName: aws.String("eip"), LogicalResourceId: aws.String(logicalID)})
		if err != nil {
			t.Fatal(err)
		}
		out, err := ec2Client(p).DescribeAddresses(ctx, &ec2.DescribeAddressesInput{})
		if err != nil || len(out.Addresses) != 1 {
			t.Fatalf("addresses: %+v, %v", out, err)
		}
		if got, want := aws.ToString(out.Addresses[0].InstanceId), aws.ToString(res.StackResourceDetail.PhysicalResourceId); got != want {
			t.Errorf("the address is on %q, want %s's %s", got, logicalID, want)
		}
	}
	csID, _ := changeSetFromURL(t, p, "eip", tmpl("Web"), cfntypes.ChangeSetTypeCreate)
	if _, err := c.ExecuteChangeSet(ctx, &cloudformation.ExecuteChangeSetInput{ChangeSetName: aws.String(csID)}); err != nil {
		t.Fatal(err)
	}
	waitForStatus(t, c, "eip", cfntypes.StackStatusCreateComplete)
	associated("Web")
	csID, _ = changeSetFromURL(t, p, "eip", tmpl("Web2"), cfntypes.ChangeSetTypeUpdate)
	if _, err := c.ExecuteChangeSet(ctx, &cloudformation.ExecuteChangeSetInput{ChangeSetName: aws.String(csID)}); err != nil {
		t.Fatal(err)
	}
	st := waitForStatus(t, c, "eip", cfntypes.StackStatusUpdateComplete)
	associated("Web2")
	if len(st.Outputs) != 1 || aws.ToString(st.Outputs[0].OutputValue) == "" || aws.ToString(st.Outputs[0].OutputValue) == "None" {
		t.Errorf("the address output after the update: %+v", st.Outputs)
	}
}
