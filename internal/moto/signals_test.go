package moto

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	cfntypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
)

func TestISODuration(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"PT15M": 15 * time.Minute, "PT1H": time.Hour, "PT30S": 30 * time.Second, "PT1H2M3S": time.Hour + 2*time.Minute + 3*time.Second,
	} {
		if got, err := isoDuration(in); err != nil || got != want {
			t.Errorf("isoDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "PT", "15M", "P1D", "PT-1M"} {
		if _, err := isoDuration(bad); err == nil {
			t.Errorf("isoDuration(%q) accepted", bad)
		}
	}
}

// signalledTemplate has an instance that must signal its readiness.
func signalledTemplate(logicalID string) string {
	return `{"Resources": {"` + logicalID + `": {"Type": "AWS::EC2::Instance",
		"CreationPolicy": {"ResourceSignal": {"Count": 1, "Timeout": "PT15M"}},
		"Properties": {"ImageId": "ami-12345678", "InstanceType": "t3.small"}}}}`
}

func signal(c *cloudformation.Client, stack, logicalID string, status cfntypes.ResourceSignalStatus) error {
	_, err := c.SignalResource(context.Background(), &cloudformation.SignalResourceInput{
		StackName: aws.String(stack), LogicalResourceId: aws.String(logicalID), UniqueId: aws.String("i-test"), Status: status,
	})
	return err
}

// A stack whose instance has a creation policy is complete only once the
// instance signals SUCCESS; the same instance's update replacing it waits
// for the new one's signal.
func TestCreationPolicyWaitsForTheSignal(t *testing.T) {
	p := start(t, ProxyConfig{})
	c := cfnClient(p)
	if _, err := createStack(c, "web", signalledTemplate("Web")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if st, err := describeStack(t, c, "web"); err != nil || st.StackStatus != cfntypes.StackStatusCreateInProgress {
		t.Fatalf("before the signal: %s, %v; want CREATE_IN_PROGRESS", st.StackStatus, err)
	}
	if err := signal(c, "web", "Other", cfntypes.ResourceSignalStatusSuccess); err == nil {
		t.Error("a signal for a resource that waits for none was taken")
	}
	if err := signal(c, "web", "Web", cfntypes.ResourceSignalStatusSuccess); err != nil {
		t.Fatal(err)
	}
	waitForStatus(t, c, "web", cfntypes.StackStatusCreateComplete)
	// Newest first, as CloudFormation lists them: the stack completes
	// after its instance's signal, not when moto made it.
	var got []string
	for _, e := range stackEvents(t, c, "web") {
		got = append(got, aws.ToString(e.LogicalResourceId)+" "+string(e.ResourceStatus)+" "+aws.ToString(e.ResourceStatusReason))
	}
	want := []string{
		"web CREATE_COMPLETE ",
		"Web CREATE_COMPLETE ",
		"Web CREATE_IN_PROGRESS Received SUCCESS signal with UniqueId i-test",
		"Web CREATE_IN_PROGRESS Resource creation Initiated; waiting for 1 SUCCESS signal(s) within 15m0s",
	}
	if len(got) < len(want) || !slices.Equal(got[:len(want)], want) || slices.Contains(got[len(want):], "web CREATE_COMPLETE ") {
		t.Errorf("events, newest first:\n%s\nwant to begin with\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if err := signal(c, "web", "Web", cfntypes.ResourceSignalStatusSuccess); err == nil {
		t.Error("a second signal for a complete resource was taken")
	}

	// An update that replaces the instance (a new logical id, as the CDK
	// makes when user data changes) waits for the new one.
	csID, _ := changeSetFromURL(t, p, "web", signalledTemplate("Web2"), cfntypes.ChangeSetTypeUpdate)
	if _, err := c.ExecuteChangeSet(context.Background(), &cloudformation.ExecuteChangeSetInput{ChangeSetName: aws.String(csID)}); err != nil {
		t.Fatal(err)
	}
	if st, err := describeStack(t, c, "web"); err != nil || st.StackStatus != cfntypes.StackStatusUpdateInProgress {
		t.Fatalf("an update before the new instance's signal: %s, %v", st.StackStatus, err)
	}
	// The new instance carries CloudFormation's tags, as one the stack's
	// creation made does: the instance reads its logical id there.
	res, err := c.DescribeStackResource(context.Background(), &cloudformation.DescribeStackResourceInput{StackName: aws.String("web"), LogicalResourceId: aws.String("Web2")})
	if err != nil {
		t.Fatal(err)
	}
	out, err := ec2Client(p).DescribeInstances(context.Background(), &ec2.DescribeInstancesInput{InstanceIds: []string{aws.ToString(res.StackResourceDetail.PhysicalResourceId)}})
	if err != nil || len(out.Reservations) != 1 {
		t.Fatalf("the new instance: %v", err)
	}
	tags := map[string]string{}
	for _, tag := range out.Reservations[0].Instances[0].Tags {
		tags[aws.ToString(tag.Key)] = aws.ToString(tag.Value)
	}
	if tags["aws:cloudformation:logical-id"] != "Web2" || tags["aws:cloudformation:stack-name"] != "web" {
		t.Errorf("the new instance's tags: %v", tags)
	}
	if err := signal(c, "web", "Web2", cfntypes.ResourceSignalStatusSuccess); err != nil {
		t.Fatal(err)
	}
	waitForStatus(t, c, "web", cfntypes.StackStatusUpdateComplete)
}

// A FAILURE signal, or none in time, rolls the new stack back with the
// reason CloudFormation gives.
func TestCreationPolicyFails(t *testing.T) {
	for _, tc := range []struct {
		name   string
		signal bool
		reason string
	}{
		{"failure signal", true, "Received FAILURE signal with UniqueId i-test"},
		{"no signal", false, "Failed to receive 1 resource signal(s) within the specified duration"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := start(t, ProxyConfig{SignalTimeout: 500 * time.Millisecond})
			c := cfnClient(p)
			if _, err := createStack(c, "web", signalledTemplate("Web")); err != nil {
				t.Fatal(err)
			}
			if tc.signal {
				if err := signal(c, "web", "Web", cfntypes.ResourceSignalStatusFailure); err != nil {
					t.Fatal(err)
				}
			}
			st := waitForStatus(t, c, "web", cfntypes.StackStatusRollbackComplete)
			if !strings.Contains(aws.ToString(st.StackStatusReason), "[Web]") {
				t.Errorf("reason %q", aws.ToString(st.StackStatusReason))
			}
			found := false
			for _, e := range stackEvents(t, c, "web") {
				found = found || e.ResourceStatus == cfntypes.ResourceStatusCreateFailed && aws.ToString(e.ResourceStatusReason) == tc.reason
			}
			if !found {
				t.Errorf("no CREATE_FAILED event saying %q: %+v", tc.reason, stackEvents(t, c, "web"))
			}
		})
	}
}
