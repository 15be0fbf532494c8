package moto

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

func TestLifecycleShowAfterStart(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	life := lifecycle{pendingFor: time.Minute}
	restarted := instanceRecord{launchedAt: t0, startedAt: t0.Add(time.Hour)}
	cases := []struct {
		name string
		at   time.Time
		want string
	}{
		{"pending again after a start", restarted.startedAt, "pending"},
		{"pending until PendingFor after the start", restarted.startedAt.Add(time.Minute - 1), "pending"},
		{"running after", restarted.startedAt.Add(time.Minute), "running"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got, _ := life.show("running", restarted, c.at); got != c.want {
				t.Errorf("show = %s, want %s", got, c.want)
			}
		})
	}
}

func TestStartInstances(t *testing.T) {
	p := start(t, ProxyConfig{PendingFor: time.Minute})
	c := ec2Client(p)
	ctx := context.Background()
	out := mustRun(t, c, &ec2.RunInstancesInput{InstanceType: types.InstanceTypeT3Small, Placement: &types.Placement{AvailabilityZone: aws.String("us-east-1b")}})
	id := *out.Instances[0].InstanceId
	p.Clock().Advance(time.Hour)
	if _, err := c.StopInstances(ctx, &ec2.StopInstancesInput{InstanceIds: []string{id}}); err != nil {
		t.Fatal(err)
	}

	// Its zone has no capacity: the start is refused and it stays stopped.
	p.SetNoCapacity("us-east-1b")
	_, err := c.StartInstances(ctx, &ec2.StartInstancesInput{InstanceIds: []string{id}})
	code, msg, status := apiError(t, err)
	want := "We currently do not have sufficient t3.small capacity in the Availability Zone you requested (us-east-1b). " +
		"Our system will be working on provisioning additional capacity."
	if code != "InsufficientInstanceCapacity" || status != 500 || msg != want {
		t.Errorf("start without capacity: %s (%d) %q", code, status, msg)
	}
	if got := states(t, c)[id]; got != "stopped" {
		t.Errorf("after a refused start: %s, want stopped", got)
	}

	// Capacity elsewhere does not help a stopped instance; in its own zone it does.
	p.SetNoCapacity("us-east-1a")
	started, err := c.StartInstances(ctx, &ec2.StartInstancesInput{InstanceIds: []string{id}})
	if err != nil {
		t.Fatal(err)
	}
	if s := started.StartingInstances[0]; s.PreviousState.Name != types.InstanceStateNameStopped || s.CurrentState.Name != types.InstanceStateNamePending {
		t.Errorf("StartInstances answered %s → %s", s.PreviousState.Name, s.CurrentState.Name)
	}
	startedAt := p.Clock().Now()
	desc, err := c.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{id}})
	if err != nil {
		t.Fatal(err)
	}
	in := desc.Reservations[0].Instances[0]
	if in.State.Name != types.InstanceStateNamePending {
		t.Errorf("just started: %s, want pending", in.State.Name)
	}
	if d := aws.ToTime(in.LaunchTime).Sub(startedAt); d < -time.Second || d > time.Second {
		t.Errorf("LaunchTime %v, want the start at %v", in.LaunchTime, startedAt)
	}
	p.Clock().Advance(time.Minute)
	if got := states(t, c)[id]; got != "running" {
		t.Errorf("a minute after the start: %s, want running", got)
	}
	// Starting a running instance boots nothing.
	again, err := c.StartInstances(ctx, &ec2.StartInstancesInput{InstanceIds: []string{id}})
	if err != nil {
		t.Fatal(err)
	}
	if s := again.StartingInstances[0]; s.CurrentState.Name != types.InstanceStateNameRunning {
		t.Errorf("starting a running instance answered %s", s.CurrentState.Name)
	}
}
