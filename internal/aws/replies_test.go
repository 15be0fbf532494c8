package aws_test

import (
	"context"
	"testing"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"

	"github.com/surgeml/surge/internal/aws"
	"github.com/surgeml/surge/internal/moto"
)

// The sweeper's view of web instances: running and stopping ones are
// alive; terminated, stopped and unknown ones are gone.
func TestWebInstancesAlive(t *testing.T) {
	ctx := context.Background()
	client := moto.Clients(t).EC2
	out, err := client.RunInstances(ctx, &ec2.RunInstancesInput{ImageId: sdk.String("ami-12345678"), InstanceType: "t3.small", MinCount: sdk.Int32(3), MaxCount: sdk.Int32(3)})
	if err != nil {
		t.Fatal(err)
	}
	running, stopped, terminated := sdk.ToString(out.Instances[0].InstanceId), sdk.ToString(out.Instances[1].InstanceId), sdk.ToString(out.Instances[2].InstanceId)
	if _, err := client.StopInstances(ctx, &ec2.StopInstancesInput{InstanceIds: []string{stopped}}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{terminated}}); err != nil {
		t.Fatal(err)
	}
	alive, err := aws.NewWebInstances(client).Alive(ctx, []string{running, stopped, terminated, "i-0000000000000dead"})
	if err != nil {
		t.Fatal(err)
	}
	if !alive[running] || alive[stopped] || alive[terminated] || alive["i-0000000000000dead"] {
		t.Errorf("alive: %v; want only %s", alive, running)
	}
}
