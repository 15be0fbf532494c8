package aws_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"

	"github.com/surgeml/surge/events"
	"github.com/surgeml/surge/internal/aws"
	"github.com/surgeml/surge/internal/moto"
	"github.com/surgeml/surge/internal/scaler"
)

// The adapter is tested against moto_server on loopback.

// setup makes a launch template and a fleet over it, with a name unique
// to the test.
func setup(t *testing.T) (*aws.Clients, *aws.Fleet, string) {
	t.Helper()
	c := moto.Clients(t)
	name := fmt.Sprintf("fleet-%d", serial.Add(1))
	moto.LaunchTemplate(t, c, name+"-worker")
	return c, aws.NewFleet(c.EC2, name, name+"-worker"), name
}

func list(t *testing.T, f *aws.Fleet) []events.Instance {
	t.Helper()
	in, err := f.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return in
}

func TestLaunchListDrain(t *testing.T) {
	c, f, name := setup(t)
	ctx := context.Background()
	want := []string{"app-tier-instance-1", "app-tier-instance-2", "app-tier-instance-10"}
	if err := f.Launch(ctx, want); err != nil {
		t.Fatal(err)
	}
	got := list(t, f)
	if len(got) != 3 {
		t.Fatalf("List = %+v", got)
	}
	for i, in := range got {
		if in.Name != want[i] || in.State == events.Draining || in.ID == "" {
			t.Errorf("instance %d: %+v, want %s live", i, in, want[i])
		}
	}
	// Both tags are on the instance, so IAM conditions can key on them.
	out, err := c.EC2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{got[0].ID}})
	if err != nil {
		t.Fatal(err)
	}
	tags := map[string]string{}
	for _, tg := range out.Reservations[0].Instances[0].Tags {
		tags[sdk.ToString(tg.Key)] = sdk.ToString(tg.Value)
	}
	if tags["Name"] != "app-tier-instance-1" || tags[aws.TagFleet] != name {
		t.Errorf("tags %v", tags)
	}
	// Another fleet's instances are not ours.
	_, other, _ := setup(t)
	if err := other.Launch(ctx, []string{"app-tier-instance-1"}); err != nil {
		t.Fatal(err)
	}
	if n := len(list(t, f)); n != 3 {
		t.Fatalf("fleet sees %d instances after another fleet launched", n)
	}

	if err := f.Drain(ctx, []string{"app-tier-instance-2", "app-tier-instance-99"}); err != nil {
		t.Fatal(err)
	}
	names := []string{}
	for _, in := range list(t, f) {
		names = append(names, in.Name)
	}
	if !slices.Equal(names, []string{"app-tier-instance-1", "app-tier-instance-10"}) {
		t.Fatalf("after draining 2: %v", names)
	}
}

// The scaler over SQS and EC2 on moto: 0 → N → cap → 0.
func TestReconcileZeroToCapToZero(t *testing.T) {
	c, f, name := setup(t)
	ctx := context.Background()
	q, err := aws.CreateQueue(ctx, c.SQS, aws.QueueSpec{Name: name + "-req-queue", Visibility: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	const max = 6
	s := scaler.New(scaler.Config{Max: max}, q, f, slog.New(slog.DiscardHandler))
	send := func(n int) {
		for range n {
			if err := q.Send(ctx, []byte("{}")); err != nil {
				t.Fatal(err)
			}
		}
	}
	reconcile := func(want int) {
		t.Helper()
		if _, err := s.Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
		if got := len(list(t, f)); got != want {
			t.Fatalf("%d instances, want %d", got, want)
		}
	}
	reconcile(0)
	send(12)
	reconcile(2)
	reconcile(2) // no double launch
	send(100)
	reconcile(max)
	reconcile(max)
	// Work the queue off.
	for {
		msgs, err := q.Receive(ctx, 10, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) == 0 {
			break
		}
		for _, m := range msgs {
			q.Delete(ctx, m.Receipt)
		}
	}
	reconcile(0)
}
