package moto

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	cfntypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// A stack with an Auto Scaling group of two, launched from the stack's
// launch template into the stack's security group, whose creation policy
// asks for a signal from each: moto launches the two, the proxy gives them
// the group's aws:cloudformation:* tags, by which each finds what to
// signal; the stack completes at the second signal. Deleting the stack
// deletes the group and its instances with it, which are not instances
// outside the stack holding its security group.
func TestAutoScalingGroupOfTheStack(t *testing.T) {
	p := start(t, ProxyConfig{ShuttingDownFor: time.Minute})
	c, e := cfnClient(p), ec2Client(p)
	ctx := context.Background()
	subnets, err := e.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{})
	if err != nil || len(subnets.Subnets) == 0 {
		t.Fatalf("subnets: %v", err)
	}
	subnet := subnets.Subnets[0]
	body := fmt.Sprintf(`{"Resources": {
		"Group": {"Type": "AWS::EC2::SecurityGroup", "Properties": {"GroupDescription": "web", "VpcId": %q}},
		"Template": {"Type": "AWS::EC2::LaunchTemplate", "Properties": {"LaunchTemplateData": {
			"ImageId": "ami-12345678", "InstanceType": "t3.small", "SecurityGroupIds": [{"Fn::GetAtt": ["Group", "GroupId"]}]}}},
		"Web": {"Type": "AWS::AutoScaling::AutoScalingGroup",
			"CreationPolicy": {"ResourceSignal": {"Count": 2, "Timeout": "PT15M"}},
			"Properties": {"AutoScalingGroupName": "x-web", "MinSize": "2", "MaxSize": "4", "VPCZoneIdentifier": [%q],
				"LaunchTemplate": {"LaunchTemplateId": {"Ref": "Template"}, "Version": {"Fn::GetAtt": ["Template", "LatestVersionNumber"]}},
				"Tags": [{"Key": "Name", "Value": "web-instance", "PropagateAtLaunch": true}]}}
		}}`, aws.ToString(subnet.VpcId), aws.ToString(subnet.SubnetId))
	id, err := createStack(c, "web", body)
	if err != nil {
		t.Fatal(err)
	}
	tags := func(in ec2types.Instance) map[string]string {
		m := map[string]string{}
		for _, tg := range in.Tags {
			m[aws.ToString(tg.Key)] = aws.ToString(tg.Value)
		}
		return m
	}
	out, err := e.DescribeInstances(ctx, &ec2.DescribeInstancesInput{Filters: []ec2types.Filter{{Name: aws.String("tag:" + groupTag), Values: []string{"x-web"}}}})
	if err != nil {
		t.Fatal(err)
	}
	var instances []string
	for _, r := range out.Reservations {
		for _, in := range r.Instances {
			instances = append(instances, aws.ToString(in.InstanceId))
			got := tags(in)
			want := map[string]string{"Name": "web-instance", groupTag: "x-web",
				"aws:cloudformation:logical-id": "Web", "aws:cloudformation:stack-name": "web", "aws:cloudformation:stack-id": id}
			for k, v := range want {
				if got[k] != v {
					t.Errorf("instance %s: tag %s = %q, want %q (tags %v)", aws.ToString(in.InstanceId), k, got[k], v, slices.Sorted(maps.Keys(got)))
				}
			}
		}
	}
	if len(instances) != 2 {
		t.Fatalf("the group launched %v, want 2 instances", instances)
	}
	for i, in := range instances {
		if s, _ := describeStack(t, c, "web"); s.StackStatus != cfntypes.StackStatusCreateInProgress {
			t.Fatalf("after %d of 2 signals the stack is %s", i, s.StackStatus)
		}
		if _, err := c.SignalResource(ctx, &cloudformation.SignalResourceInput{
			StackName: aws.String("web"), LogicalResourceId: aws.String("Web"), UniqueId: aws.String(in), Status: cfntypes.ResourceSignalStatusSuccess,
		}); err != nil {
			t.Fatal(err)
		}
	}
	waitForStatus(t, c, "web", cfntypes.StackStatusCreateComplete)

	if _, err := c.DeleteStack(ctx, &cloudformation.DeleteStackInput{StackName: aws.String("web")}); err != nil {
		t.Fatal(err)
	}
	waitForStatus(t, c, id, cfntypes.StackStatusDeleteComplete)
	for id, state := range states(t, e, ec2types.Filter{Name: aws.String("instance-id"), Values: instances}) {
		if state != "terminated" {
			t.Errorf("the group's instance %s is %s after the stack's deletion", id, state)
		}
	}
}
